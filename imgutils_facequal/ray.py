"""Scoring datasets on Ray Data: one model per actor, the package's own pipeline in each, nothing lost.

`FaceQualityScorer` is a callable class for ``Dataset.map_batches``: each actor loads the
classifier and the detectors once, in its constructor, warms them, and then scores batches
of encoded images with `imgutils_facequal.score_images_with` (decoding, detection and
classification overlapped, crops pooled into forward passes). It returns a ``pyarrow.Table``
of the package's one output schema (`imgutils_facequal.rows.arrow_schema`): one row per
face, one per image without a face, one error row per image that cannot be read, with the
batch's other columns carried through after them.

`score_dataset` builds that ``map_batches`` call in one place: a fixed pool of actors, the
CPUs and GPUs each one asks for, images per call kept apart from crops per forward pass,
and a check that the actors leave a CPU free for Ray's read tasks (without one the dataset
never starts). The readers turn what users have into the ``path`` (id) and ``bytes``
columns the scorer reads: `read_image_folder` (a folder of images, through
``read_binary_files``), `read_hf_parquet` (Hugging Face Parquet with an ``Image`` column)
and `read_image_webdataset` (webdataset tar shards). ``read_images`` is never used: one
corrupt file there aborts the whole dataset, where here it gives one error row.

Resume is the package's own, not Ray's checkpointing: `completed_ids` reads the ids already
complete in an output folder of Parquet shards (`imgutils_facequal.store`, the rule of every
resume), sets half-written shards aside, and the readers and the scorer take ``skip``.

This module imports ``ray``; ``import imgutils_facequal`` does not. Install the ``ray``
extra: ``pip install 'imgutils-facequal[ray]'``.
"""
import io
import json
import os
from typing import Any, Dict, Iterable, Optional, Sequence, Set

from .pipeline import IMAGE_EXTENSIONS, InputImage, find_images, in_detection_thread, score_images_with
from .plugins import get_detector
from .scoring import load_face_quality_detector
from .sessions import THREADS_ENV, session_threads
from .settings import ScoringSettings
from .store import PROVENANCE_KEY, make_provenance, result_rows, rows_table
from .store.paths import path_from_text, text_path
from .store.formats.shards import ACTOR_KEY, completed

__all__ = ['ID_COLUMN', 'IMAGE_COLUMN', 'ACTOR_KEY', 'FaceQualityScorer', 'score_dataset', 'check_cpu_headroom',
           'read_image_folder', 'read_hf_parquet', 'read_image_webdataset', 'completed_ids']

#: The column that names each image (its path, key or id), as ``read_binary_files(include_paths=True)`` calls it.
ID_COLUMN = 'path'
#: The column of encoded image bytes, as ``read_binary_files`` calls it.
IMAGE_COLUMN = 'bytes'
#: The prefix given to a carried column whose name is one of the output columns.
CARRIED_PREFIX = 'input_'

_constructed = 0  # scorers built in this process: 1 per actor when the model loads once per actor


def _warm_up_image():
    from PIL import Image
    return Image.new('RGB', (64, 64), (128, 128, 128))


def _png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format='PNG')
    return buffer.getvalue()


def _assigned_resources() -> Optional[Dict[str, float]]:
    """The resources Ray gave the calling actor or task; ``None`` outside a Ray worker (a driver, no Ray)."""
    import ray
    if not ray.is_initialized() or ray.get_runtime_context().get_actor_id() is None:
        return None
    return ray.get_runtime_context().get_assigned_resources()


class FaceQualityScorer:
    """A callable class for ``Dataset.map_batches``: scores a batch of encoded images, one actor, one model.

    :param settings: The `imgutils_facequal.ScoringSettings` to score with
        (``FaceQualityDetector.settings`` gives a loaded detector's); ``options`` (any of its
        fields) replace its fields.

    :param batch_size: Crops per forward pass of the classifier, pooled across the images of
        a call (default the classifier's: 2 on a CPU, 32 on a GPU). Images per call are the
        ``batch_size`` of ``map_batches`` (``images_per_call`` in `score_dataset`).
    :param workers: Threads that decode, crop and preprocess (default the classifier's).
    :param id_column: The column naming each image; it becomes the ``image`` column of the rows.
    :param image_column: The column of encoded images: bytes, or a struct with a ``bytes``
        field (a Hugging Face ``Image`` column). A row whose bytes are null is read from its
        id as a file path, so a missing file gives an error row naming it.
    :param threads: Threads of every ONNX and OpenVINO session of this actor (it sets
        ``IMGUTILS_FACEQUAL_THREADS`` before anything loads); default the CPUs Ray gave the
        actor, else the variable's value, else every core.
    :param skip: Ids to leave out (already scored; see `completed_ids`): they give no rows.
    :raises imgutils_facequal.errors.ModelNotAvailableError: At once, when the classifier or a
        detector cannot be had.

    Example:

        >>> import ray.data
        >>> from imgutils_facequal.ray import FaceQualityScorer
        >>> ds = ray.data.read_binary_files('frames/', include_paths=True)  # doctest: +SKIP
        >>> rows = ds.map_batches(FaceQualityScorer, fn_constructor_kwargs={'crop': 'head'},
        ...                       batch_format='pyarrow', batch_size=64,
        ...                       compute=ray.data.ActorPoolStrategy(size=2))  # doctest: +SKIP
        >>> rows.write_parquet('scores/')  # doctest: +SKIP
    """

    def __init__(self, settings: Optional[ScoringSettings] = None, batch_size: Optional[int] = None,
                 workers: Optional[int] = None, id_column: str = ID_COLUMN, image_column: str = IMAGE_COLUMN,
                 threads: Optional[int] = None, skip: Optional[Iterable[str]] = None, **options: Any):
        global _constructed
        _constructed += 1
        if threads is None:
            cpus = (_assigned_resources() or {}).get('CPU')
            threads = max(1, int(cpus)) if cpus else None
        if threads is not None:
            if int(threads) < 1:
                raise ValueError(f'threads must be at least 1; got {threads!r}.')
            os.environ[THREADS_ENV] = str(int(threads))  # read when each session opens, below
        self.faces = load_face_quality_detector(settings=settings, **options)
        self.batch_size = batch_size
        self.workers = workers
        self.id_column = id_column
        self.image_column = image_column
        self.skip: Set[str] = set(skip or ())
        self.classes = list(self.faces.classifier.classes)
        self._warm_up()
        self.provenance = make_provenance(self.faces, batch_size=batch_size, workers=workers)
        self.actor = self._actor_info(threads)
        self._metadata = {PROVENANCE_KEY: json.dumps(self.provenance).encode('utf-8'),
                          ACTOR_KEY: json.dumps([self.actor]).encode('utf-8')}

    def _warm_up(self) -> None:
        """Open every session now, in the threads that will use them, so a missing model fails here."""
        image = _warm_up_image()
        self.faces.classifier.scores_in_batches([image])
        locator = self.faces.locator

        def detectors():
            locator.locate(image)
            if locator.crop == 'head' and locator.head_detector is not None:
                get_detector(locator.head_detector)(image, **locator.head_detector_options)

        in_detection_thread(detectors)  # imgutils opens its sessions per thread: this one
        result, = score_images_with(self.faces, [InputImage('warm-up', data=_png(image))], batch_size=self.batch_size,
                                    workers=self.workers)
        if result.error is not None:
            raise RuntimeError(f'The warm-up image did not score: {result.error}')

    def _actor_info(self, threads: Optional[int]) -> Dict[str, Any]:
        import ray
        info: Dict[str, Any] = {'pid': os.getpid(), 'scorers_built_in_process': _constructed,
                                'threads': session_threads() if threads is None else int(threads),
                                'cuda_visible_devices': os.environ.get('CUDA_VISIBLE_DEVICES')}
        resources = _assigned_resources()
        if resources is not None:
            info.update(node_id=ray.get_runtime_context().get_node_id(),
                        gpu_ids=[str(gpu) for gpu in ray.get_gpu_ids()], resources=resources)
        return info

    def __call__(self, batch):
        """Rows of the output schema for a batch (a ``pyarrow.Table`` or a dict of columns)."""
        import pyarrow as pa
        table = batch if isinstance(batch, pa.Table) else pa.table(dict(batch))
        ids = [str(value) for value in table.column(self.id_column).to_pylist()]
        data = _image_bytes(table.column(self.image_column).to_pylist())
        todo = [index for index, name in enumerate(ids) if name not in self.skip]
        images = [InputImage(path_from_text(ids[index]), data=data[index]) for index in todo]
        rows, sources = [], []
        results = score_images_with(self.faces, images, batch_size=self.batch_size, workers=self.workers)
        for index, result in zip(todo, results):
            for row in result_rows(result):
                rows.append(row)
                sources.append(index)
        out = rows_table(rows, self.classes)
        carried = table.drop_columns([name for name in {self.id_column, self.image_column}])
        carried = carried.take(pa.array(sources, type=pa.int64()))
        for name, column in zip(carried.column_names, carried.columns):
            out = out.append_column(CARRIED_PREFIX + name if name in out.column_names else name, column)
        return out.replace_schema_metadata(self._metadata)


def _image_bytes(values: Sequence[Any]) -> list:
    """Encoded bytes (or ``None``) from bytes values or ``{'bytes': ..., 'path': ...}`` structs."""
    return [value.get('bytes') if isinstance(value, dict) else value for value in values]


def check_cpu_headroom(actors: int, cpus_per_actor: float, cluster_cpus: Optional[float] = None) -> None:
    """Refuse a plan whose actors would take every CPU: Ray's read tasks (a CPU each) would never run.

    :param cluster_cpus: The cluster's CPUs; default ``ray.cluster_resources()['CPU']``.
    :raises ValueError: When fewer than one CPU would be left to the read tasks; the message
        says what to change.
    """
    if actors < 1 or cpus_per_actor <= 0:
        raise ValueError(f'actors must be at least 1 and CPUs per actor more than 0; got {actors} and '
                         f'{cpus_per_actor}.')
    if cluster_cpus is None:
        import ray
        cluster_cpus = ray.cluster_resources().get('CPU', 0.0)
    taken = actors * cpus_per_actor
    if cluster_cpus - taken < 1:
        raise ValueError(
            f'{actors} actors x {cpus_per_actor:g} CPUs each would take {taken:g} of the cluster\'s '
            f'{cluster_cpus:g} CPUs and leave less than one to Ray\'s read tasks, so the dataset would hang '
            f'before its first image. Use fewer actors or fewer CPUs per actor, or start Ray with more '
            f'logical CPUs (ray.init(num_cpus=...) or ray start --num-cpus ...).')


def score_dataset(ds, actors: int = 1, cpus_per_actor: float = 1.0, gpus_per_actor: float = 0.0,
                  images_per_call: int = 64, skip: Optional[Iterable[str]] = None, scorer: type = FaceQualityScorer,
                  **scorer_options: Any):
    """The rows of every image of a Ray dataset, scored by a pool of `FaceQualityScorer` actors (lazy).

    :param ds: A ``ray.data.Dataset`` with an id column and an image column (see the readers).
    :param actors: Actors in the pool, each with its own model (``ActorPoolStrategy(size=actors)``).
    :param cpus_per_actor: CPUs each actor asks for; its sessions run that many threads.
    :param gpus_per_actor: GPUs each actor asks for (``0.5``: two actors share one card); Ray
        gives each actor its card as ``CUDA_VISIBLE_DEVICES``.
    :param images_per_call: Images per call of an actor (``map_batches``' ``batch_size``);
        crops per forward pass are ``batch_size`` in ``scorer_options``.
    :param skip: Ids to leave out (see `completed_ids`).
    :param scorer: `FaceQualityScorer` or a subclass of it.
    :param scorer_options: Keyword arguments of `FaceQualityScorer` (``settings``, any scoring setting, ``batch_size``,
        ``workers``, ``id_column``, ``image_column``, ``threads``...).
    :raises ValueError: When the actors would take every CPU of the cluster (`check_cpu_headroom`).

    Example:

        >>> from imgutils_facequal.ray import read_image_folder, score_dataset
        >>> rows = score_dataset(read_image_folder(['frames/']), actors=2, cpus_per_actor=2)  # doctest: +SKIP
        >>> rows.write_parquet('scores/')  # doctest: +SKIP
    """
    import ray
    from ray.data import ActorPoolStrategy
    if not ray.is_initialized():
        ray.init()  # what Ray Data does on the first execution; the headroom check needs the cluster now
    check_cpu_headroom(actors, cpus_per_actor)
    if images_per_call < 1:
        raise ValueError(f'images_per_call must be at least 1; got {images_per_call!r}.')
    if scorer_options.get('threads') is None:
        scorer_options['threads'] = max(1, int(cpus_per_actor))
    return ds.map_batches(scorer, fn_constructor_kwargs={**scorer_options, 'skip': sorted(set(skip or ()))},
                          batch_format='pyarrow', batch_size=images_per_call, compute=ActorPoolStrategy(size=actors),
                          num_cpus=cpus_per_actor, num_gpus=gpus_per_actor or None)


def _id_table(ids: Sequence[str], data: Sequence[Optional[bytes]]):
    import pyarrow as pa
    return pa.table({ID_COLUMN: pa.array(list(ids), type=pa.string()),
                     IMAGE_COLUMN: pa.array(list(data), type=pa.binary())})


def read_image_folder(paths: Sequence[str], skip: Optional[Iterable[str]] = None):
    """A dataset of ``path`` and ``bytes`` for files, folders and globs, as `imgutils_facequal.find_images` finds them.

    Folders are walked for image extensions, hidden files left out; the ids are the paths
    ``find_images`` gives, so they match the in-process command's (a name that is not UTF-8
    as `imgutils_facequal.store.paths.text_path` writes it). The listing runs here; the files
    are read by ``read_binary_files(include_paths=True)``. A path that does not exist, or
    whose name is not UTF-8 (which Arrow cannot name), gets a row with null bytes: the scorer
    reads it from its id, or gives an error row naming it. Ids in ``skip`` are not read at all.
    """
    import ray.data
    skip = set(skip or ())
    items = [item.path for item in find_images(list(paths)) if text_path(item.path) not in skip]
    present, by_id = [], []
    for path in items:
        text = text_path(path)
        if text == path and os.path.isfile(path):
            present.append(path)
        else:
            by_id.append(text)
    parts = []
    if present:
        parts.append(ray.data.read_binary_files(present, include_paths=True))
    if by_id or not parts:
        parts.append(ray.data.from_arrow(_id_table(by_id, [None] * len(by_id))))
    return parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]


def _normalised(batch, id_of, image_of, drop: Sequence[str], skip: Set[str]):
    """A ``pyarrow`` batch as ``path``, ``bytes`` and the columns not in ``drop``, rows in ``skip`` left out."""
    import pyarrow as pa
    rows = batch.to_pylist()
    keep = [index for index, row in enumerate(rows) if id_of(row) not in skip]
    out = _id_table([id_of(rows[index]) for index in keep], [image_of(rows[index]) for index in keep])
    rest = batch.drop_columns([name for name in drop if name in batch.column_names]).take(
        pa.array(keep, type=pa.int64()))
    for name, column in zip(rest.column_names, rest.columns):
        if name not in out.column_names:
            out = out.append_column(name, column)
    return out


def read_hf_parquet(paths, image_column: str = 'image', id_column: Optional[str] = None,
                    skip: Optional[Iterable[str]] = None):
    """A dataset of ``path``, ``bytes`` and the other columns, from Hugging Face Parquet with an ``Image`` column.

    :param image_column: The ``Image`` column (a struct of ``bytes`` and ``path``).
    :param id_column: The column that names each image; default the image's own ``path``.
    """
    import ray.data
    skip = set(skip or ())

    def id_of(row):
        return str(row[id_column] if id_column else (row[image_column] or {}).get('path'))

    def normalise(batch):
        return _normalised(batch, id_of, lambda row: (row[image_column] or {}).get('bytes'), [image_column], skip)

    return ray.data.read_parquet(paths).map_batches(normalise, batch_format='pyarrow')


def read_image_webdataset(paths, skip: Optional[Iterable[str]] = None):
    """A dataset of ``path``, ``bytes`` and ``shard`` from webdataset tar shards (``read_webdataset(decoder=None)``).

    Each sample's id is its key and the extension of its image member (``episode2/frame04.png``),
    so a folder packed into shards keeps its ids. Members that are no image (captions, json)
    are left out: join them on ``path``. A sample without an image member gets null bytes,
    so an error row.
    """
    import ray.data
    skip = set(skip or ())
    extensions = [extension.lstrip('.') for extension in IMAGE_EXTENSIONS]

    def image_member(row):
        # a member a sample lacks reads as null or NaN, depending on the block
        return next((name for name in extensions if isinstance(row.get(name), (bytes, bytearray))), None)

    def id_of(row):
        member = image_member(row)
        return row['__key__'] + ('.' + member if member else '')

    def normalise(batch):
        import pyarrow as pa
        rows = [row for row in batch.to_pylist() if id_of(row) not in skip]
        out = _id_table([id_of(row) for row in rows], [row.get(image_member(row) or '') for row in rows])
        return out.append_column('shard', pa.array([row.get('__url__') for row in rows], type=pa.string()))

    return ray.data.read_webdataset(paths, decoder=None).map_batches(normalise, batch_format='pyarrow')


def completed_ids(directory: str) -> Set[str]:
    """Ids complete in a folder of Parquet shards of the output schema, for ``skip``; half-written shards are
    set aside, and error rows leave their shards, so the images that failed are scored again (see
    `imgutils_facequal.store.formats.shards.completed`)."""
    return completed(directory, key=text_path)
