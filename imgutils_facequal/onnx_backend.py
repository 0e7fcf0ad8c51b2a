"""The ONNX backend: one onnxruntime session per model and provider, shared by all threads.

Sessions are opened with imgutils' ``open_onnx_model``, so ``ONNX_MODE`` (``cpu``, ``gpu``,
...) picks the execution provider exactly as in imgutils. onnxruntime's ``run`` is safe
to call from many threads at once; opening is guarded by a lock so each model is opened
once.
"""
import json
import os
import threading
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

from .errors import ModelNotAvailableError
from .files import fetch_model_file, read_json_file
from .graph_cache import choose_graph
from .models import ModelSource
from .preprocess import create_stage_transform, images_to_batch

if TYPE_CHECKING:  # annotations only: numpy is imported on first use
    import numpy as np

__all__ = ['FaceQualityOnnxModel', 'get_onnx_model', 'probabilities_from_output', 'checked_probabilities',
           'read_classes', 'open_onnx_session']

_PROBABILITY_TOLERANCE = 1e-3


def probabilities_from_output(output):
    """Rows of a classifier output as probabilities.

    The published graphs end in a softmax. A graph that returns logits instead is detected
    by its rows not being probability distributions (a value outside [0, 1], or a row
    whose sum is not 1), and then every row gets a softmax.
    """
    import numpy as np
    output = np.asarray(output, dtype=np.float64)
    is_distribution = (
        np.all(output >= -_PROBABILITY_TOLERANCE) and np.all(output <= 1 + _PROBABILITY_TOLERANCE)
        and np.allclose(output.sum(axis=-1), 1.0, atol=_PROBABILITY_TOLERANCE)
    )
    if is_distribution:
        probabilities = np.clip(output, 0.0, None)
    else:
        shifted = output - output.max(axis=-1, keepdims=True)
        probabilities = np.exp(shifted)
    return probabilities / probabilities.sum(axis=-1, keepdims=True)


def checked_probabilities(source: ModelSource, output, classes: List[str]) -> 'np.ndarray':
    """:func:`probabilities_from_output`, after checking the output has one column per class."""
    if output.ndim != 2 or output.shape[1] != len(classes):
        raise ModelNotAvailableError(
            f'Model {source.model_name!r} ({source.location}) returned shape {tuple(output.shape)}, but has '
            f'{len(classes)} classes {classes}. The ONNX file and the class list do not belong together.'
        )
    return probabilities_from_output(output)


def _classes_from_metadata(metadata: Dict[str, str]) -> Optional[List[str]]:
    raw = metadata.get('classes')
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, list) else None


def read_classes(source: ModelSource, metadata: Dict[str, str]) -> Tuple[List[str], str]:
    """Class names, from the ONNX file's metadata, else config.json, else meta.json; and where they came from."""
    classes = _classes_from_metadata(metadata)
    if classes:
        return [str(c) for c in classes], 'model.onnx metadata'
    config = read_json_file(source, 'config.json', required=False) or {}
    classes = (config.get('task_config') or {}).get('classes') or config.get('classes')
    if classes:
        return [str(c) for c in classes], 'config.json'
    meta = read_json_file(source, 'meta.json', required=False) or {}
    classes = meta.get('classes')
    if classes:
        return [str(c) for c in classes], 'meta.json'
    raise ModelNotAvailableError(
        f'Model {source.model_name!r} ({source.location}): no class names found in the ONNX '
        f'metadata "classes", config.json "task_config.classes" or meta.json "classes" '
        f'(offline, those files may just not be cached). Use a repository in the published layout.'
    )


def open_onnx_session(path: str, mode: Optional[str], where: str):
    """imgutils' onnxruntime session of ``path`` (``mode``: its provider), with an error that says what to do."""
    from imgutils.utils import open_onnx_model
    try:
        return open_onnx_model(path, mode=mode)
    except Exception as err:
        raise ModelNotAvailableError(
            f'{where}: onnxruntime cannot open {path!r}: {err}. The file may be '
            f'corrupt: delete it from the cache and download it again.'
        ) from err


class FaceQualityOnnxModel:
    """A loaded face-quality classifier: its session, classes and preprocessing.

    Get one with :func:`get_onnx_model`; it is cached and safe to share between threads.
    ``onnx_path`` is the model's ONNX file (from the hub cache, a local directory, or an
    export); ``run_path`` the file the ``session`` runs, ``onnx_path`` itself or its
    rewrite for onnxruntime (``graph_rewrites`` lists what changed, see :mod:`graph_cache`);
    ``classes`` its class names.
    """

    def __init__(self, source: ModelSource, provider_mode: Optional[str] = None):
        self.source = source
        where = f'Model {source.model_name!r} ({source.location})'
        onnx_path = fetch_model_file(
            source, 'model.onnx',
            missing_hint="The exporter skips model.onnx when the export is not a single file. "
                         "Use backend='transformers' (or 'auto'), which needs the torch extra, or make "
                         "a local ONNX copy once with export_onnx(model_name) and use it as before.",
        )
        self.onnx_path = onnx_path
        preprocessor = read_json_file(source, 'preprocessor_config.json')
        self.stages = preprocessor.get('stages') if isinstance(preprocessor, dict) else None
        self.transform = create_stage_transform(self.stages, where)

        def open_session(path, mode=provider_mode):
            return open_onnx_session(path, mode, where)

        def check_batch():
            from .export import check_images
            return self.preprocess(check_images())

        graph = choose_graph(onnx_path, _provider_key(provider_mode), lambda path: open_session(path, 'cpu'),
                             check_batch)
        #: The ONNX file that runs: ``onnx_path`` itself or its checked rewrite (see :mod:`graph_cache`).
        self.run_path = graph.path
        self.graph_rewrites = graph.rewrites
        self.graph_note = graph.note
        self.session = graph.session or open_session(graph.path)
        inputs = self.session.get_inputs()
        outputs = self.session.get_outputs()
        self.input_name = next((i.name for i in inputs if i.name == 'input'), inputs[0].name)
        self.output_name = next((o.name for o in outputs if o.name == 'output'), outputs[0].name)
        self.classes, self.classes_from = read_classes(source, self.session.get_modelmeta().custom_metadata_map)
        self.run_count = 0
        self._count_lock = threading.Lock()

    def preprocess(self, images: Sequence) -> 'np.ndarray':
        """Decoded RGB images to the model's input batch, through the repository's stages."""
        return images_to_batch(list(images), self.transform)

    def predict(self, batch) -> 'np.ndarray':
        """One forward pass over a preprocessed batch; probabilities ``[n, n_classes]``."""
        output = self.session.run([self.output_name], {self.input_name: batch})[0]
        with self._count_lock:
            self.run_count += 1
        return checked_probabilities(self.source, output, self.classes)

    def scores(self, images: Sequence) -> List[Dict[str, float]]:
        """Class probabilities for decoded RGB images, in one forward pass."""
        probabilities = self.predict(self.preprocess(images))
        return [dict(zip(self.classes, map(float, row))) for row in probabilities]


_models: Dict[Tuple, FaceQualityOnnxModel] = {}
_models_lock = threading.Lock()


def _provider_key(mode: Optional[str]) -> str:
    from imgutils.utils import get_onnx_provider
    return get_onnx_provider(mode or os.environ.get('ONNX_MODE', None))


def get_onnx_model(source: ModelSource, provider_mode: Optional[str] = None) -> FaceQualityOnnxModel:
    """The cached :class:`FaceQualityOnnxModel` for a source and execution provider."""
    key = (source.repo_id, source.revision, source.local_dir, _provider_key(provider_mode))
    model = _models.get(key)
    if model is None:
        with _models_lock:
            model = _models.get(key)
            if model is None:
                model = FaceQualityOnnxModel(source, provider_mode)
                _models[key] = model
    return model
