"""Choosing and loading a backend: ``onnx`` (default), ``openvino``, ``transformers`` or ``auto``.

* ``onnx``: onnxruntime on the repository's ``model.onnx`` (or a local export of it, see
  :func:`imgutils_facequal.export.export_onnx`); no torch.
* ``openvino``: Intel's OpenVINO on the same ``model.onnx``, on the CPU; needs the
  ``openvino`` extra (see :mod:`imgutils_facequal.openvino_backend`).
* ``transformers``: the model card's way, ``AutoModel`` with remote code; needs the
  ``torch`` extra.
* ``auto``: ONNX when the repository (or a local export) has it, else transformers when
  the ``torch`` extra is installed, else an error saying what to install.

``precision='bf16'`` is an opt-in of the transformers backend (see
:mod:`imgutils_facequal.transformers_backend`) and of the openvino backend (see
:mod:`imgutils_facequal.openvino_backend`); ``auto`` picks transformers for it.
"""
import os
from typing import Optional, Union

from .errors import BackendNotAvailableError, MissingModelFileError
from .export import exported_source
from .models import DEFAULT_MODEL, resolve_model
from .onnx_backend import FaceQualityOnnxModel, get_onnx_model
from .openvino_backend import FaceQualityOpenVINOModel, get_openvino_model
from .transformers_backend import (FaceQualityTransformersModel, check_precision, get_transformers_model,
                                   require_torch_extra)

__all__ = ['BACKENDS', 'DEFAULT_BACKEND', 'CPU_BATCH_SIZE', 'GPU_BATCH_SIZE', 'CPU_WORKERS', 'GPU_WORKERS',
           'load_face_quality_model', 'default_batch_size', 'default_workers', 'runs_on_gpu']

BACKENDS = ('onnx', 'openvino', 'transformers', 'auto')
DEFAULT_BACKEND = 'onnx'

#: Crops per forward pass on a CPU. caformer_s36 is compute-bound there: on 2 cores the
#: time per face does not improve beyond 2 crops (on an AVX-512 Xeon, 0.31 s at 1 and 0.27 s
#: at 2 call by call, 0.33 s at 8, 0.48 s at 32) while peak memory grows by about 80 MB a
#: crop (340 MB at 1, 490 MB at 2, 970 MB at 8, 2.9 GB at 32), so a small batch wins
#: (benchmarks/performance.py; an AVX2 EPYC gave the same shape).
CPU_BATCH_SIZE = 2
#: Crops per forward pass on a GPU, where batching is what makes it fast.
GPU_BATCH_SIZE = 32
#: Threads decoding, cropping and preprocessing ahead of the classifier when it runs on the
#: CPU: the classifier's own threads already use the cores.
CPU_WORKERS = 2
#: The same with a GPU, where the CPU work is what limits the rate (benchmarks/gpu_performance.py).
GPU_WORKERS = 8

FaceQualityModel = Union[FaceQualityOnnxModel, FaceQualityOpenVINOModel, FaceQualityTransformersModel]


def _onnx_mode(device: Optional[str]) -> Optional[str]:
    if device is None:
        return None
    return 'gpu' if device.startswith('cuda') else device


def load_face_quality_model(model_name: str = DEFAULT_MODEL, revision: Optional[str] = None,
                            backend: str = DEFAULT_BACKEND, device: Optional[str] = None,
                            precision: str = 'fp32') -> FaceQualityModel:
    """Load (once, then from the cache) the classifier behind ``model_name``.

    Scoring functions call this for you; call it yourself to fetch the model up front or to
    read its ``classes``. Every backend's model has ``classes``, ``scores(images)`` (one
    forward pass over decoded RGB images) and ``preprocess(images)``.

    :param backend: ``onnx``, ``openvino``, ``transformers`` or ``auto`` (see the module docs).
    :param device: ``cpu``, ``cuda``, ``cuda:1``... For ``onnx``, ``cpu`` or ``cuda`` pick the
        execution provider (default: ``ONNX_MODE``, else CUDA when onnxruntime has it); for
        ``transformers``, the torch device (default: CUDA when available); ``openvino`` runs
        on the CPU only.
    :param precision: ``fp32`` (default) or ``bf16``: the transformers backend's opt-in runs
        the model's repeated blocks in bfloat16 (faster on CPUs with AVX512-BF16 or AMX, and
        on GPUs), the openvino backend's the matrix products of the first two stages' blocks
        (on CPUs with AVX512-BF16 or AMX); see the Performance page for how far they move
        the scores.
    :raises UnknownModelError: When ``model_name`` cannot be resolved.
    :raises ModelNotAvailableError: When the model's files cannot be had.
    :raises BackendNotAvailableError: When the backend's packages are not installed.
    """
    if backend not in BACKENDS:
        raise ValueError(f'backend must be one of {", ".join(BACKENDS)}; got {backend!r}.')
    check_precision(precision)
    if precision != 'fp32' and backend == 'onnx':
        raise ValueError(f"precision={precision!r} runs in torch or OpenVINO: pass backend='transformers' (or "
                         f"'auto'), with the torch extra installed, or backend='openvino', with the openvino extra. "
                         f"The onnx backend runs fp32.")
    source = resolve_model(model_name, revision=revision)
    if backend == 'openvino':
        return get_openvino_model(exported_source(source) or source, device, precision)
    if backend == 'transformers' or precision != 'fp32':
        return get_transformers_model(source, device, precision)
    onnx_source = exported_source(source) or source
    if backend == 'onnx':
        return get_onnx_model(onnx_source, _onnx_mode(device))
    try:
        return get_onnx_model(onnx_source, _onnx_mode(device))
    except MissingModelFileError as missing_onnx:
        try:
            require_torch_extra("backend='auto' falls back to the transformers backend, which")
        except BackendNotAvailableError as no_torch:
            raise BackendNotAvailableError(f'{missing_onnx} {no_torch}') from missing_onnx
        return get_transformers_model(source, device)


def runs_on_gpu(model: FaceQualityModel) -> bool:
    """Whether the model's forward passes run on a GPU (CUDA for torch, any non-CPU provider for ONNX)."""
    if isinstance(model, (FaceQualityTransformersModel, FaceQualityOpenVINOModel)):
        return str(model.device).startswith('cuda')
    return model.session.get_providers()[0] != 'CPUExecutionProvider'


def default_batch_size(model: FaceQualityModel) -> int:
    """:data:`GPU_BATCH_SIZE` when the model runs on a GPU, else :data:`CPU_BATCH_SIZE`; for the
    openvino backend, at least as many crops as it scores at once."""
    if isinstance(model, FaceQualityOpenVINOModel):
        return max(CPU_BATCH_SIZE, model.requests)
    return GPU_BATCH_SIZE if runs_on_gpu(model) else CPU_BATCH_SIZE


def default_workers(model: FaceQualityModel) -> int:
    """Threads preparing images for :func:`imgutils_facequal.pipeline.score_images`.

    :data:`CPU_WORKERS` when the model runs on the CPU; with a GPU, :data:`GPU_WORKERS`
    (at most one per CPU core), enough to decode and preprocess as fast as it scores.
    """
    return min(GPU_WORKERS, os.cpu_count() or 1) if runs_on_gpu(model) else CPU_WORKERS
