"""Published ONNX graphs rewritten once, checked against the original, and cached on disk.

The first time the ONNX backend opens a classifier's ``model.onnx`` on the CPU or CUDA
provider, or the OpenVINO backend opens it, it applies `rewrite_onnx_graph` (the rewrites
that runtime runs fastest, see `REWRITES_FOR`), runs the rewritten and the original graph
on the check images (`graphs.check.check_images`, through the repository's preprocessing,
on the CPU provider) and keeps the rewrite only when every class probability agrees within
`CHECK_TOLERANCE`. The result, a rewritten ``model.onnx`` (with its SHA-256 digest) or a
note that the original is to be used, is cached under ``$IMGUTILS_FACEQUAL_HOME/rewritten``,
keyed by the source file and the rewrites, so later loads (offline too) open the rewritten
graph directly, once its digest matches; a damaged one is made again from the original.
Set ``IMGUTILS_FACEQUAL_REWRITE_ONNX=0`` to run the original graphs as they are.
"""
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence

from ..home import facequal_home
from .check import CHECK_TOLERANCE, probabilities_from_output
from .onnx_rewrites import ONNXRUNTIME_REWRITES, OPENVINO_REWRITES, rewrite_onnx_graph

__all__ = ['REWRITE_ENV', 'REWRITE_PROVIDERS', 'REWRITES_FOR', 'GraphChoice', 'rewrites_enabled', 'rewritten_dir',
           'cached_graph', 'choose_graph']

REWRITE_ENV = 'IMGUTILS_FACEQUAL_REWRITE_ONNX'

logger = logging.getLogger('imgutils_facequal')

#: The execution providers with a ``com.microsoft`` ``MultiHeadAttention`` kernel.
REWRITE_PROVIDERS = ('CPUExecutionProvider', 'CUDAExecutionProvider')
#: The rewrites each runtime gets: onnxruntime's providers above, and ``'openvino'``.
REWRITES_FOR = {**{provider: ONNXRUNTIME_REWRITES for provider in REWRITE_PROVIDERS}, 'openvino': OPENVINO_REWRITES}

# part of the cache key: bump when the rewrites change what they produce
_REWRITES_VERSION = 1


@dataclass
class GraphChoice:
    """The graph the backend runs, and why.

    :param path: The ONNX file to open.
    :param rewrites: The rewrites in it (empty when ``path`` is the original).
    :param note: How it was chosen, for ``imgutils-facequal models`` and messages.
    :param session: An already open session of ``path``, when choosing opened one.
    """
    path: str
    rewrites: List[str] = field(default_factory=list)
    note: str = ''
    session: object = None


def rewrites_enabled() -> bool:
    return os.environ.get(REWRITE_ENV, '1').strip().lower() not in ('0', 'false', 'no', 'off')


def rewritten_dir() -> str:
    """``{facequal_home()}/rewritten``: one folder per rewritten source file."""
    return os.path.join(facequal_home(), 'rewritten')


def _cache_folder(onnx_path: str, rewrites: Sequence[str]) -> str:
    real = os.path.realpath(onnx_path)
    stat = os.stat(real)
    key = f'{real}|{stat.st_size}|{stat.st_mtime_ns}|{_REWRITES_VERSION}|{",".join(rewrites)}'
    return os.path.join(rewritten_dir(), hashlib.sha256(key.encode()).hexdigest()[:20])


def _digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as file:
        for block in iter(lambda: file.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def _probabilities(session, batch):
    import numpy as np
    name, output = session.get_inputs()[0].name, session.get_outputs()[0].name
    # two images a run: the check then needs no more memory than scoring at the default batch size
    return np.concatenate([probabilities_from_output(session.run([output], {name: batch[start:start + 2]})[0])
                           for start in range(0, len(batch), 2)])


def _rewrite_and_check(onnx_path: str, models: list, rewrites: Sequence[str], folder: str, open_session: Callable,
                       check_batch, keep_sessions: bool) -> GraphChoice:
    import numpy as np
    import onnx
    import onnxruntime

    started = time.perf_counter()
    model, rewrites = rewrite_onnx_graph(models.pop(), rewrites)  # popped: the caller keeps no reference to it
    report = {'source': os.path.realpath(onnx_path), 'rewrites': rewrites, 'onnxruntime': onnxruntime.__version__,
              'tolerance': CHECK_TOLERANCE}
    os.makedirs(rewritten_dir(), exist_ok=True)
    staging = tempfile.mkdtemp(prefix='.staging-', dir=rewritten_dir())
    try:
        choice = GraphChoice(path=onnx_path, note='the original graph: nothing to rewrite')
        if rewrites:
            logger.info('Rewrote %s for speed (%s); checking it against the original on a few images, then caching '
                        'it in %s, once (this can take a minute).', onnx_path, ', '.join(rewrites), rewritten_dir())
            staged = os.path.join(staging, 'model.onnx')
            onnx.save(model, staged)
            del model
            report['sha256'] = _digest(staged)
            # one graph in memory at a time: the first load is the package's memory peak
            expected = _probabilities(open_session(onnx_path), check_batch)
            rewritten_session = open_session(staged)
            difference = float(np.abs(_probabilities(rewritten_session, check_batch) - expected).max())
            report['max_difference'] = difference
            if difference <= CHECK_TOLERANCE:
                choice = GraphChoice(path=os.path.join(folder, 'model.onnx'), rewrites=rewrites,
                                     note=f'rewritten ({", ".join(rewrites)}), checked: largest difference '
                                          f'{difference:.1e}', session=rewritten_session if keep_sessions else None)
            else:
                del rewritten_session
                os.remove(staged)
                choice = GraphChoice(path=onnx_path, note=f'the original graph: the rewrite differed by '
                                                          f'{difference:.1e}')
                warnings.warn(f'The rewritten graph of {onnx_path} gives probabilities up to {difference:.1e} '
                              f'away from the original (allowed {CHECK_TOLERANCE:g}); running the '
                              f'original graph. Please report this with the model name.', RuntimeWarning,
                              stacklevel=4)
        report['note'] = choice.note
        report['seconds'] = round(time.perf_counter() - started, 2)
        with open(os.path.join(staging, 'rewrite.json'), 'w') as file:
            json.dump(report, file, indent=2)
        try:
            os.replace(staging, folder)
        except OSError:  # another process finished first; its result is as good
            if not os.path.isfile(os.path.join(folder, 'rewrite.json')):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return choice


def cached_graph(onnx_path: str, rewrites: Sequence[str] = ONNXRUNTIME_REWRITES) -> Optional[GraphChoice]:
    """What an earlier load decided for ``onnx_path`` and these rewrites (its rewrite, or the original), if any.

    A cached rewrite whose file no longer has the digest recorded beside it (altered, or cut
    short), or whose record cannot be read, counts as none: it is made again.
    """
    try:
        folder = _cache_folder(onnx_path, rewrites)
        with open(os.path.join(folder, 'rewrite.json')) as file:
            report = json.load(file)
        rewritten = os.path.join(folder, 'model.onnx')
        if os.path.isfile(rewritten):
            if report.get('sha256') != _digest(rewritten):
                return None
            return GraphChoice(path=rewritten, rewrites=report.get('rewrites', []), note=report.get('note', ''))
    except (OSError, ValueError, AttributeError):
        return None
    return GraphChoice(path=onnx_path, note=report.get('note', ''))


def choose_graph(onnx_path: str, provider: str, open_session: Callable, check_batch: Callable) -> GraphChoice:
    """The graph to run for ``onnx_path``: its cached rewrite, a new checked rewrite, or itself.

    :param onnx_path: The classifier's ``model.onnx``, as fetched.
    :param provider: The execution provider it will run on, or ``'openvino'``: it picks the
        rewrites (`REWRITES_FOR`).
    :param open_session: Opens an onnxruntime session of a path on the CPU, for the check:
        float32 there is the same on every machine (CUDA may multiply in TF32), and a
        rewrite's arithmetic does not depend on the provider.
    :param check_batch: Returns the preprocessed check images, called only to check a new rewrite.
    """
    if not rewrites_enabled():
        return GraphChoice(path=onnx_path, note=f'the original graph ({REWRITE_ENV}=0)')
    if provider not in REWRITES_FOR:
        return GraphChoice(path=onnx_path, note=f'the original graph (no rewrites for {provider})')
    rewrites = REWRITES_FOR[provider]
    cached = cached_graph(onnx_path, rewrites)
    if cached is not None:
        return cached
    try:
        import onnx
    except ImportError:
        return GraphChoice(path=onnx_path, note='the original graph (the onnx package is not installed)')
    try:
        models = [onnx.load(onnx_path)]
    except Exception:  # noqa: BLE001 - not an ONNX file: opening it reports the problem, not the rewrite
        return GraphChoice(path=onnx_path, note='the original graph (not readable as ONNX)')
    folder = _cache_folder(onnx_path, rewrites)
    if os.path.isdir(folder):  # a cached rewrite that did not pass: made again from the original
        logger.warning('The cached rewrite in %s is damaged (its digest or record does not match); making it again '
                       'from %s.', folder, onnx_path)
        shutil.rmtree(folder, ignore_errors=True)
    try:
        return _rewrite_and_check(onnx_path, models, rewrites, folder, open_session, check_batch(),
                                  keep_sessions=provider == 'CPUExecutionProvider')
    except Exception as err:  # noqa: BLE001 - a rewrite must never stop a model from loading
        warnings.warn(f'Could not rewrite {onnx_path} for speed ({type(err).__name__}: {err}); running the '
                      f'original graph. Please report this with the model name.', RuntimeWarning, stacklevel=3)
        choice = GraphChoice(path=onnx_path, note=f'the original graph: rewriting failed ({type(err).__name__})')
        try:  # remembered, so later loads do not try again
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, 'rewrite.json'), 'w') as file:
                json.dump({'source': os.path.realpath(onnx_path), 'rewrites': [], 'note': choice.note,
                           'error': f'{type(err).__name__}: {err}'}, file, indent=2)
        except OSError:
            pass
        return choice
