"""Backends run a face-quality classifier: ``onnx`` (default), ``openvino``, ``transformers``, or ``auto``.

* ``onnx``: onnxruntime on the repository's ``model.onnx`` (or a local export of it); no torch.
* ``openvino``: OpenVINO on the same ``model.onnx``, on the CPU; the ``openvino`` extra.
* ``transformers``: the model card's way, ``AutoModel`` with the repository's remote code;
  the ``torch`` extra.
* ``auto``: the repository's (or a local export's) ``model.onnx`` when it has one, on
  OpenVINO where the classifier runs on the CPU and the ``openvino`` extra is installed
  (measured 1.1 to 1.2 x onnxruntime on an AVX-512 Xeon, and level with it on an AVX2 EPYC), else
  on onnxruntime; without ``model.onnx``, transformers when the ``torch`` extra is
  installed, else an error saying what to install; with ``precision='bf16'``,
  transformers. The fast preset uses it. ``onnx`` and ``openvino`` run the same file and
  give the same scores up to float rounding, so saved scores resume across them.

Each backend is a subclass of `FaceQualityClassifier`, chosen from
`BACKEND_CLASSES`.
"""
import importlib.util
from typing import Dict, Optional, Type

from ..errors import BackendNotAvailableError, MissingModelFileError, ModelNotAvailableError
from ..models import DEFAULT_MODEL, resolve_model
from .base import (
    CPU_BATCH_SIZE,
    CPU_WORKERS,
    GPU_BATCH_SIZE,
    GPU_WORKERS,
    PRECISIONS,
    FaceQualityClassifier,
    open_classifier,
    top_class,
)
from .onnx import FaceQualityOnnxModel
from .openvino import FaceQualityOpenVINOModel
from .transformers import FaceQualityTransformersModel, require_torch_extra

__all__ = ['BACKENDS', 'BACKEND_CLASSES', 'DEFAULT_BACKEND', 'PRECISIONS', 'CPU_BATCH_SIZE', 'GPU_BATCH_SIZE',
           'CPU_WORKERS', 'GPU_WORKERS', 'FaceQualityClassifier', 'load_face_quality_model', 'top_class']

#: The backends by name.
BACKEND_CLASSES: Dict[str, Type[FaceQualityClassifier]] = {
    cls.backend: cls for cls in (FaceQualityOnnxModel, FaceQualityOpenVINOModel, FaceQualityTransformersModel)
}
#: What ``backend=`` takes.
BACKENDS = (*BACKEND_CLASSES, 'auto')
DEFAULT_BACKEND = 'onnx'


def _check_options(backend: str, precision: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f'backend must be one of {", ".join(BACKENDS)}; got {backend!r}.')
    if precision not in PRECISIONS:
        raise ValueError(f'precision must be one of {", ".join(PRECISIONS)}; got {precision!r}.')
    if backend != 'auto' and precision not in BACKEND_CLASSES[backend].precisions:
        raise ValueError(f"precision={precision!r} runs in torch or OpenVINO: pass backend='transformers' (or "
                         f"'auto'), with the torch extra installed, or backend='openvino', with the openvino extra. "
                         f"The {backend} backend runs {', '.join(BACKEND_CLASSES[backend].precisions)}.")


def _open(backend: str, source, device: Optional[str], precision: str) -> FaceQualityClassifier:
    cls = BACKEND_CLASSES[backend]
    return open_classifier(cls, cls.files_source(source), cls.device_key(device), precision)


def _onnx_runs_on_cpu(device: Optional[str]) -> bool:
    return FaceQualityOnnxModel.device_key(device) == 'CPUExecutionProvider'


def _open_onnx_graph(source, device: Optional[str], precision: str) -> FaceQualityClassifier:
    """``auto``'s choice for a model with ``model.onnx``: OpenVINO on the CPU when it is installed and
    can read the file, else onnxruntime."""
    if _onnx_runs_on_cpu(device) and importlib.util.find_spec('openvino') is not None:
        try:
            return _open('openvino', source, device, precision)
        except (BackendNotAvailableError, ModelNotAvailableError):  # too old for the file, or cannot read it
            pass  # onnxruntime runs it, or says why it cannot have it either
    return _open('onnx', source, device, precision)


def load_face_quality_model(model_name: str = DEFAULT_MODEL, revision: Optional[str] = None,
                            backend: str = DEFAULT_BACKEND, device: Optional[str] = None,
                            precision: str = 'fp32') -> FaceQualityClassifier:
    """Load (once, then from the cache) the classifier behind ``model_name``.

    The scoring functions call this for you. Call it yourself to fetch the model up front,
    to read its ``classes``, or to hand the loaded model to
    `imgutils_facequal.load_face_quality_detector`. The classifier has ``classes``,
    ``scores(images)`` (one forward pass over decoded RGB images),
    ``scores_in_batches(images)`` and ``settings`` (the keyword arguments that load it again).

    :param model_name: Registered name, hub repository id (``org/name``) or local directory.
    :param revision: Hub revision (branch, tag or commit) of the repository.
    :param backend: ``onnx``, ``openvino``, ``transformers`` or ``auto`` (see the module docs).
    :param device: ``cpu``, ``cuda``, ``cuda:1``... For ``onnx``, ``cpu`` or ``cuda`` pick the
        execution provider (default: ``ONNX_MODE``, else CUDA when onnxruntime has it); for
        ``transformers``, the torch device (default: CUDA when available); ``openvino`` runs
        on the CPU only.
    :param precision: ``fp32`` (default) or ``bf16``, an opt-in of the transformers backend (the
        repeated blocks in bfloat16) and of the openvino backend (the products of the first
        two stages in bfloat16), faster on CPUs with AVX512-BF16 or AMX and on GPUs.
    :raises UnknownModelError: When ``model_name`` cannot be resolved.
    :raises ModelNotAvailableError: When the model's files cannot be had.
    :raises BackendNotAvailableError: When the backend's packages are not installed.
    :raises ValueError: When the options do not go together.

    Example:

        >>> from imgutils_facequal import load_face_quality_model
        >>> model = load_face_quality_model()  # doctest: +SKIP
        >>> model.classes  # doctest: +SKIP
        ['poor', 'ok', 'good', 'excellent']
    """
    _check_options(backend, precision)
    source = resolve_model(model_name, revision=revision)
    if backend != 'auto':
        return _open(backend, source, device, precision)
    if precision != 'fp32':
        return _open('transformers', source, device, precision)
    try:
        return _open_onnx_graph(source, device, precision)
    except ModelNotAvailableError as no_onnx:  # no model.onnx, or none cached (offline)
        try:
            require_torch_extra("backend='auto' falls back to the transformers backend, which")
        except BackendNotAvailableError as no_torch:
            raise BackendNotAvailableError(f'{no_onnx} {no_torch}') from no_onnx
        try:
            return _open('transformers', source, device, precision)
        except ModelNotAvailableError as no_transformers:
            if isinstance(no_onnx, MissingModelFileError):
                raise
            raise ModelNotAvailableError(f'{no_onnx} The transformers backend cannot load it either: '
                                         f'{no_transformers}') from no_transformers
