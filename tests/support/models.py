"""Helpers around the package's loaded models: start from an empty cache, count forward passes."""
from typing import List


def forget_loaded_models() -> None:
    """Empty the package's caches of loaded classifiers and detectors, as a new process has them."""
    from imgutils_facequal.backends.base import open_classifier
    open_classifier.cache_clear()


def count_forward_passes(model, monkeypatch) -> List[int]:
    """The batch size of every forward pass ``model`` runs from now on (the real pass still runs)."""
    passes: List[int] = []
    predict = model.predict

    def counted(batch):
        passes.append(len(batch))
        return predict(batch)

    monkeypatch.setattr(model, 'predict', counted)
    return passes
