"""The transformers backend: the model card's own way of loading and running the model.

``AutoImageProcessor`` and ``AutoModel`` with ``trust_remote_code=True`` and
``use_infer_head=True`` (so the model returns probabilities), classes from
``model.config.classes``, batched under ``torch.inference_mode()``, on CUDA when it is
available. Needs the ``torch`` extra: ``pip install 'imgutils-facequal[torch]'``.
"""
import threading
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

from .errors import BackendNotAvailableError, ModelNotAvailableError
from .models import ModelSource

if TYPE_CHECKING:  # annotations only: torch is imported on first use
    import numpy as np
    import torch

__all__ = ['FaceQualityTransformersModel', 'get_transformers_model', 'require_torch_extra', 'default_device']

_TORCH_EXTRA = "pip install 'imgutils-facequal[torch]'"


def require_torch_extra(purpose: str = 'The transformers backend'):
    """Import torch, timm and transformers, or say which extra installs them."""
    missing = []
    for name in ('torch', 'timm', 'transformers'):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise BackendNotAvailableError(
            f'{purpose} needs {", ".join(missing)}, which {"is" if len(missing) == 1 else "are"} not '
            f'installed. Install the torch extra: {_TORCH_EXTRA}'
        )


def default_device() -> str:
    """``cuda`` when torch sees a GPU, else ``cpu``."""
    import torch
    return 'cuda' if torch.cuda.is_available() else 'cpu'


class FaceQualityTransformersModel:
    """A face-quality classifier loaded with transformers, as in the model card."""

    def __init__(self, source: ModelSource, device: Optional[str] = None):
        require_torch_extra()
        from transformers import AutoImageProcessor, AutoModel

        self.source = source
        self.device = device or default_device()
        where = f'Model {source.model_name!r} ({source.location})'
        location = source.local_dir if source.is_local else source.repo_id
        options = {'trust_remote_code': True}
        if not source.is_local and source.revision is not None:
            options['revision'] = source.revision
        try:
            self.processor = AutoImageProcessor.from_pretrained(location, **options)
            self.model = AutoModel.from_pretrained(location, use_infer_head=True, **options)
        except (OSError, ValueError) as err:
            raise ModelNotAvailableError(
                f'{where}: transformers cannot load it: {err} To fix it: run once with network '
                f'access so it lands in the Hugging Face cache, or point model_name at a local '
                f'directory in the published layout (config.json, model.safetensors, '
                f'preprocessor_config.json and the remote code).'
            ) from err
        self.model.eval().to(self.device)
        classes = getattr(self.model.config, 'classes', None)
        if not classes:
            raise ModelNotAvailableError(f'{where}: model.config has no classes.')
        self.classes: List[str] = [str(name) for name in classes]
        self.stages = getattr(self.processor, 'to_dict', dict)().get('stages')
        self.run_count = 0
        self._lock = threading.Lock()

    def preprocess(self, images: Sequence) -> 'torch.Tensor':
        """Decoded RGB images to ``pixel_values`` through the repository's image processor."""
        return self.processor(list(images), return_tensors='pt')['pixel_values']

    def predict(self, batch) -> 'np.ndarray':
        """One forward pass; probabilities ``[n, n_classes]``."""
        import torch
        from .onnx_backend import probabilities_from_output
        batch = torch.as_tensor(batch)
        with self._lock, torch.inference_mode():
            output = self.model(batch.to(self.device))
            self.run_count += 1
        output = getattr(output, 'logits', output)
        return probabilities_from_output(output.float().cpu().numpy())

    def scores(self, images: Sequence) -> List[Dict[str, float]]:
        """Class probabilities for decoded RGB images, in one forward pass."""
        probabilities = self.predict(self.preprocess(images))
        return [dict(zip(self.classes, map(float, row))) for row in probabilities]


_models: Dict[Tuple, FaceQualityTransformersModel] = {}
_models_lock = threading.Lock()


def get_transformers_model(source: ModelSource, device: Optional[str] = None) -> FaceQualityTransformersModel:
    """The cached transformers model for a source and device."""
    require_torch_extra()
    device = device or default_device()
    key = (source.repo_id, source.revision, source.local_dir, device)
    model = _models.get(key)
    if model is None:
        with _models_lock:
            model = _models.get(key)
            if model is None:
                model = _models[key] = FaceQualityTransformersModel(source, device)
    return model
