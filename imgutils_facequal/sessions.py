"""onnxruntime sessions opened the way imgutils opens them, with a thread count the caller controls.

A process that shares its machine with others (a Ray actor, a Slurm task, one of N shell
jobs) sets ``IMGUTILS_FACEQUAL_THREADS`` to the cores it was given; unset, a CPU session
uses every core, as imgutils' own sessions do.
"""
import os
from typing import Optional

from .errors import ModelNotAvailableError

__all__ = ['THREADS_ENV', 'session_threads', 'open_onnx_session']

THREADS_ENV = 'IMGUTILS_FACEQUAL_THREADS'


def session_threads() -> int:
    """Threads a CPU session runs on: ``IMGUTILS_FACEQUAL_THREADS``, else every core.

    :raises ValueError: When the variable is set to anything but a positive whole number.
    """
    value = os.environ.get(THREADS_ENV, '').strip()
    if not value:
        return os.cpu_count() or 1
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f'{THREADS_ENV}={value!r}: give the number of threads, a whole number of 1 or more.')
    return int(value)


def open_onnx_session(path: str, provider: Optional[str], where: str):
    """An onnxruntime session of ``path`` on ``provider`` (imgutils' names: ``cpu``, ``gpu``, or a provider
    name; ``None`` for CUDA when onnxruntime has it), with an error that says what to do."""
    import onnxruntime
    from imgutils.utils import get_onnx_provider
    provider = get_onnx_provider(provider)
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    if provider == 'CPUExecutionProvider':
        options.intra_op_num_threads = session_threads()
    providers = [provider] + (['CPUExecutionProvider'] if provider != 'CPUExecutionProvider' else [])
    try:
        return onnxruntime.InferenceSession(path, options, providers=providers)
    except Exception as err:
        raise ModelNotAvailableError(
            f'{where}: onnxruntime cannot open {path!r}: {err}. The file may be '
            f'corrupt: delete it from the cache and download it again.'
        ) from err
