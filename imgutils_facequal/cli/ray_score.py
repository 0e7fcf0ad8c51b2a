"""``imgutils-facequal score --ray``: the same scoring on Ray Data, written as Parquet shards to a folder.

The actors score; this process (the driver) writes what they return as whole shards
(`imgutils_facequal.store.formats.shards`). A rerun reads the images already complete in
the shards and scores only the rest. Progress, the summary and
the exit codes are those of the in-process command.
"""
import importlib.util
import os
import socket
from collections import namedtuple
from typing import List, Optional, Sequence

import click

from ..pipeline import ImageResult, InputImage, find_images
from ..ray import check_cpu_headroom, read_image_folder, score_dataset
from ..settings import ScoringSettings
from ..store import image_key
from ..store.paths import path_from_text
from ..store.formats.shards import ShardWriter, check_shard_folder, completed
from .common import EXIT_UNAVAILABLE, Progress, fail, finish

__all__ = ['score_on_ray']

#: Images per call of an actor.
IMAGES_PER_CALL = 64
#: Seconds to wait for a cluster's address to answer before saying nothing listens there.
CONNECT_TIMEOUT = 5.0

_Face = namedtuple('_Face', 'label quality')


def _check_reachable(address: str) -> None:
    """Fail at once when nothing listens at ``HOST:PORT`` (Ray itself would retry without end)."""
    host, _, port = address.rpartition(':')
    try:
        socket.create_connection((host.strip('[]'), int(port)), timeout=CONNECT_TIMEOUT).close()
    except (OSError, ValueError) as err:
        fail(f'no Ray cluster answers at {address} ({getattr(err, "strerror", None) or err}). Start one there '
             f'(ray start --head --port {port}), check the address (HOST:PORT of the head node, 6379 unless set '
             f'otherwise), or give --ray alone to start a cluster on this machine for this run.', EXIT_UNAVAILABLE)


def _connect(address: str) -> None:
    import ray
    if ray.is_initialized():
        return
    if address.startswith('ray://'):
        if importlib.util.find_spec('grpc') is None:
            fail(f'{address} is a Ray Client address, which needs ray[client] (pip install "ray[client]"); the ray '
                 f'extra does not install it. Run the command on a machine of the cluster with --ray auto or '
                 f'--ray HOST:6379 instead.', EXIT_UNAVAILABLE)
    elif address not in ('local', 'auto'):
        _check_reachable(address)
    # Ray's C++ side logs a line marked E on every successful run (actors whose constructor arguments are in
    # the object store, ray-project/ray#53727); failures reach this process as exceptions, and the logs under
    # Ray's session folder keep the rest. RAY_BACKEND_LOG_LEVEL set by the user wins.
    os.environ.setdefault('RAY_BACKEND_LOG_LEVEL', 'fatal')
    try:
        # 'local': an existing cluster named by RAY_ADDRESS, else a new one on this machine
        ray.init(address=None if address == 'local' else address, include_dashboard=False, log_to_driver=False)
    except ConnectionError as err:
        where = ('no Ray cluster is running on this machine (--ray auto connects to one started with '
                 '`ray start --head`, or named by RAY_ADDRESS)' if address == 'auto' else f'{address}: {err}')
        fail(f'cannot connect to Ray: {where}. Start the cluster first, or give --ray alone to start one on this '
             f'machine for this run.', EXIT_UNAVAILABLE)
    ray.data.DataContext.get_current().enable_progress_bars = False


def _cpus_per_actor(actors: int) -> float:
    """An equal share of the cluster's CPUs per actor, one CPU left to Ray's read tasks."""
    import ray
    cpus = ray.cluster_resources().get('CPU', 1.0)
    return float(max(1, int((cpus - 1) // actors)))


def _results(table) -> List[ImageResult]:
    """What `Progress` counts, per image of a block of rows."""
    results: dict = {}
    for image, label, quality, error in zip(*(table.column(name).to_pylist()
                                               for name in ('image', 'label', 'quality', 'error'))):
        result = results.setdefault(image, ImageResult(InputImage(path_from_text(image))))
        if error is not None:
            result.error = error
        elif label is not None:
            result.faces.append(_Face(label, quality))
    return list(results.values())


def score_on_ray(paths: Sequence[str], output: Optional[str], address: str, actors: int, gpus_per_actor: float,
                 quiet: bool, log_interval: Optional[float], settings: ScoringSettings, batch_size: Optional[int],
                 workers: Optional[int]) -> None:
    """Score ``paths`` on a Ray cluster into the folder ``output``; exits with the command's codes."""
    if not output:
        raise click.UsageError('--ray writes Parquet shards to a folder: give it as --output (-o scores/).')
    if os.path.exists(output) and not os.path.isdir(output):
        raise click.UsageError(f'--ray writes Parquet shards to a folder, and {output!r} is a file: give a folder '
                               f'as --output.')
    os.makedirs(output, exist_ok=True)
    check_shard_folder(output)  # before anything in it is set aside or rewritten
    images = find_images(list(paths))
    if not images:
        click.echo(f'Warning: no images found in {", ".join(map(repr, paths))} (image files end in .png, .jpg, '
                   f'.webp...).', err=True)
    done = completed(output)
    todo = [item.path for item in images if image_key(item.path) not in done]
    _connect(address)
    cpus = _cpus_per_actor(actors)
    check_cpu_headroom(actors, cpus)
    progress = Progress(len(todo), quiet, done_before=len(images) - len(todo),
                        **({} if log_interval is None else {'log_interval': log_interval}))
    # relative paths name files from this folder; the actors, in folders of their own, cannot record it
    writer = ShardWriter(output, {'working_dir': os.getcwd(), 'roots': [os.path.abspath(path) for path in paths]})
    interrupted = False
    if todo:
        rows = score_dataset(read_image_folder(todo), actors=actors, cpus_per_actor=cpus,
                             gpus_per_actor=gpus_per_actor, images_per_call=IMAGES_PER_CALL, settings=settings,
                             batch_size=batch_size, workers=workers)
        try:
            for table in rows.iter_batches(batch_format='pyarrow', batch_size=None):  # blocks as the actors made them
                results = _results(table)
                writer.add(table, len(results))
                for result in results:
                    progress.update(result)
        except KeyboardInterrupt:
            interrupted = True
        except Exception as err:
            if not getattr(err, 'actor_init_failed', False):  # ray.exceptions.RayActorError's
                raise
            fail(f'the actors could not start: {_creation_failure(err)}', EXIT_UNAVAILABLE)
        finally:
            writer.flush()
    finish(progress, interrupted)


def _creation_failure(err) -> str:
    """The exception line of the traceback of an actor whose constructor raised (Ray keeps only its text)."""
    lines = [line for line in str(getattr(err, 'error_msg', err)).splitlines() if line and not line[0].isspace()]
    return lines[-1] if lines else str(err)
