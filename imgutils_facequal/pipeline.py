"""Scoring many images: folder walking, parallel decoding, crops from several images per
forward pass, results in input order. The command-line tool is built on this.

Images are decoded, cropped and preprocessed into the classifier's input in worker
threads while the main thread runs forward passes, so all of that overlaps inference.
The one exception is the transformers backend on a CPU: its torch preprocessing would
fight the forward pass for the cores, so the main thread preprocesses each batch just
before running it.

Detection runs in one thread of its own, which the workers hand their decoded images
to: imgutils opens a session per detector per calling thread, each with a thread per
core, so detecting in every worker would load the detectors once per worker and leave
their sessions fighting over the cores. On a CPU with two cores or fewer, detection does
not overlap classification at all (`overlaps_detection`): the workers decode ahead, and
each image is detected and cropped just before its crops are queued. On a GPU the images the workers
have decoded go to the detectors together, up to `DETECTION_BATCH` per call
(`imgutils_facequal.FaceLocator.locate_batch`), which keeps the card busy; on a CPU
that measured no faster, so there each image is a call of its own.

The crops of consecutive images are pooled into forward passes of ``batch_size`` crops.
A file that cannot be read yields a result with ``error`` set, and the run goes on.
"""
import glob
import os
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future, TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from .caching import cached
from .errors import DetectionError, ImageLoadError, InputNotFoundError, ModelOutputError
from .images import load_rgb_image
from .scoring import FaceQualityDetector, FaceQualityResult, face_results, load_face_quality_detector
from .settings import ScoringSettings

__all__ = ['IMAGE_EXTENSIONS', 'InputImage', 'ImageResult', 'find_images', 'shard_images', 'score_images',
           'score_images_with', 'in_detection_thread', 'perceptual_hash']

#: Images per detector call on a GPU, at most (the ones the workers have decoded by then).
DETECTION_BATCH = 8
#: File extensions picked up when walking folders (files named explicitly are always taken).
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.webp', '.bmp', '.gif', '.tif', '.tiff', '.jfif', '.avif')


@dataclass(frozen=True)
class InputImage:
    """An image to score: its path (or, with ``data``, its id), and the folder it was found under.

    :param path: The file, or with ``data`` the id that names the image in results and errors.
    :param root: The folder it was found under, for relative output paths.
    :param data: The encoded image itself (bytes), read instead of ``path``.
    """
    path: str
    root: str = '.'
    data: Optional[bytes] = field(default=None, repr=False, compare=False)

    @property
    def relative_path(self) -> str:
        return os.path.relpath(self.path, self.root)


def find_images(paths: Sequence[str], exclude: Sequence[str] = ()) -> List[InputImage]:
    """Files, folders (walked recursively, image extensions only) and globs, in a stable order.

    An image is taken once however it is spelled (``frames``, ``./frames``, an absolute path,
    a way through a symbolic link): images are told apart by their real path. Folders and
    globs take image files only; a file named on its own is always taken (and reported if it
    cannot be read).

    :param exclude: Files and folders never taken, nor anything under them: a command's own
        outputs (drawings, the output file and its companions), which a rerun would otherwise
        read as inputs when they lie inside an input folder.
    :raises InputNotFoundError: When a path is neither a file, a folder nor a glob that
        matches something; the message names it.
    """
    found: List[InputImage] = []
    seen = set()
    excluded = tuple(_path_key(path) for path in exclude)
    under_excluded = tuple(key.rstrip(os.sep) + os.sep for key in excluded)

    def add(path: str, root: str) -> None:
        key = os.path.realpath(path)
        own = os.path.normcase(key)  # _path_key, without a second realpath
        if key not in seen and not (excluded and (own in excluded or own.startswith(under_excluded))):
            seen.add(key)
            found.append(InputImage(path, root))

    def walk(folder: str, root: str) -> None:
        for directory, subdirectories, files in os.walk(folder):
            subdirectories[:] = sorted(name for name in subdirectories
                                       if not excluded or _path_key(os.path.join(directory, name)) not in excluded)
            for name in sorted(files):
                if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith('.'):
                    add(os.path.join(directory, name), root)

    missing = []
    for path in paths:
        if os.path.isdir(path):
            walk(path, path)
        elif os.path.lexists(path):
            add(path, os.path.dirname(path) or '.')
        else:
            matches = sorted(glob.glob(path, recursive=True))
            if not matches:
                missing.append(path)
            for match in matches:
                if os.path.isdir(match):
                    walk(match, match)
                elif match.lower().endswith(IMAGE_EXTENSIONS):
                    add(match, os.path.dirname(match) or '.')
    if missing:
        raise InputNotFoundError(
            f'No such file, folder or matching glob: {", ".join(map(repr, missing))}. Check the spelling (a glob in '
            f'quotes is expanded here; unquoted, by the shell).')
    return found


def _path_key(path: str) -> str:
    return os.path.normcase(os.path.realpath(path))


def shard_images(images: Sequence[InputImage], index: int, count: int) -> List[InputImage]:
    """The ``index``-th of ``count`` stable shares of ``images`` (``index`` from 1 to ``count``).

    An image's share comes from a hash of its real path alone, so N jobs given the same
    inputs, each its own ``index``, score every image once between them, whatever order
    or spelling their inputs have.

    >>> images = [InputImage(f'/frames/{n}.png') for n in range(100)]
    >>> shares = [shard_images(images, index, 4) for index in (1, 2, 3, 4)]
    >>> sum(map(len, shares)), len({image for share in shares for image in share})
    (100, 100)
    """
    if not (isinstance(count, int) and isinstance(index, int) and 1 <= index <= count):
        raise ValueError(f'A shard is I/N with 1 <= I <= N; got {index}/{count}.')
    import hashlib

    def share(image: InputImage) -> int:
        digest = hashlib.sha1(os.fsencode(os.path.realpath(image.path))).digest()
        return int.from_bytes(digest[:8], 'big') % count

    return [image for image in images if share(image) == index - 1]


@dataclass
class ImageResult:
    """The outcome for one input image: its faces, or the reason it failed."""
    image: InputImage
    faces: List[FaceQualityResult] = field(default_factory=list)
    error: Optional[str] = None
    size: Optional[Tuple[int, int]] = None
    decoded: Any = None  # the decoded PIL image, when keep_images=True
    #: The image's perceptual hash (`perceptual_hash`), for near-duplicates; ``None`` without imagehash.
    phash: Optional[str] = None
    #: Seconds this image spent in each stage (``decoding`` with cropping and preprocessing, ``detection``,
    #: its share of ``classification``): busy time, not wall time, since the stages overlap.
    seconds: Dict[str, float] = field(default_factory=dict, repr=False)


@cached(per_process=False)
def _imagehash():
    try:
        import imagehash
    except ImportError:
        return None
    return imagehash


def perceptual_hash(image) -> Optional[str]:
    """The perceptual hash of a decoded image, as 16 hex digits (``imagehash.phash``, 64 bits), for
    finding near-duplicates (`imgutils_facequal.curate.duplicate_groups`); ``None`` without imagehash
    (the ``dedup`` extra)."""
    module = _imagehash()
    return None if module is None else str(module.phash(image))


@dataclass
class _Prepared:
    result: ImageResult
    locations: list
    inputs: list  # one classifier input (or crop, see _score; or a _Deferred) per crop, dropped once scored
    face_input: List[int]
    scores: Dict[int, Dict[str, float]] = field(default_factory=dict)
    error: Optional[str] = None

    @property
    def complete(self) -> bool:
        return len(self.scores) == len(self.inputs)


@dataclass(frozen=True)
class _Deferred:
    """A classifier input not made yet: ``crop()`` makes its image when its batch runs."""
    crop: Callable[[], Any]


class _DaemonThreads:
    """Threads that run the calls submitted to them, as a ``ThreadPoolExecutor`` does, but as daemon threads
    that nothing joins: the interpreter waits at exit for every ``ThreadPoolExecutor`` thread, so after Ctrl-C a
    detector call still running (a slow plugin's may take minutes) would hold the process until it returned."""

    def __init__(self, max_workers: int, name: str):
        self.max_workers, self.name = max_workers, name
        self.threads: List[threading.Thread] = []
        self.work: queue.SimpleQueue = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.closed = False

    def submit(self, function: Callable, *args: Any) -> Future:
        future: Future = Future()
        with self.lock:
            if self.closed:
                raise RuntimeError(f'{self.name} threads are shut down.')
            self.work.put((future, function, args))
            if len(self.threads) < self.max_workers:
                thread = threading.Thread(target=self._run, name=f'{self.name}_{len(self.threads)}', daemon=True)
                thread.start()
                self.threads.append(thread)
        return future

    def _run(self) -> None:
        while True:
            item = self.work.get()
            if item is None:
                return
            future, function, args = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(function(*args))
            except BaseException as err:  # noqa: BLE001 - handed to whoever waits for the future
                future.set_exception(err)
            del item, future  # the result is the waiter's: this thread keeps no image alive

    def shutdown(self) -> None:
        """Cancel the calls that have not started and let the threads end after the ones running; wait for
        none of them."""
        with self.lock:
            self.closed = True
            while True:
                try:
                    item = self.work.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[0].cancel()
            for _ in self.threads:
                self.work.put(None)


def _result(future: Future) -> Any:
    """What ``future`` gives, waited for in slices: a wait on a lock alone is not broken by Ctrl-C everywhere
    (on Windows), and a slice's end lets the interrupt in."""
    while True:
        try:
            return future.result(timeout=0.25)
        except FutureTimeout:
            if future.done():  # a TimeoutError the call itself raised
                raise


@cached(per_process=True)  # a forked child has none of the parent's threads: it starts its own
def _detection_thread() -> _DaemonThreads:
    # kept for the life of the process: imgutils opens its sessions per thread, so a fresh
    # thread would load the detectors again on every call
    return _DaemonThreads(max_workers=1, name='facequal-detect')


class _Detection:
    """Detection in the detection thread, one image per call, or (``batch`` > 1, on a GPU) the images the
    workers have handed over by then in one `FaceLocator.locate_batch` call. Each image gets its own
    locations and its own share of the time, or its own error."""

    def __init__(self, locator, batch: int):
        self.locator, self.batch = locator, batch
        self.pool = _detection_thread()
        self.lock = threading.Lock()
        self.pending: List[Tuple[Any, Future]] = []

    def __call__(self, decoded) -> Tuple[list, float]:
        """``(locations, seconds)`` of one decoded image; raises what its detection raised."""
        if self.batch == 1:
            return _result(self.pool.submit(self._one, decoded))
        future: Future = Future()
        with self.lock:
            self.pending.append((decoded, future))
            first = len(self.pending) == 1
        if first:
            self.pool.submit(self._drain)
        return _result(future)

    def _one(self, decoded) -> Tuple[list, float]:
        started = time.perf_counter()
        return self.locator.locate(decoded), time.perf_counter() - started

    def _drain(self) -> None:
        while True:
            with self.lock:
                taken, self.pending = self.pending[:self.batch], self.pending[self.batch:]
            if not taken:
                return
            started = time.perf_counter()
            try:
                found = self.locator.locate_batch([decoded for decoded, _ in taken])
            except Exception:  # one image's failure must stay that image's: detect them one by one
                for decoded, future in taken:
                    try:
                        future.set_result(self._one(decoded))
                    except Exception as err:  # noqa: BLE001 - handed to the worker that waits for it
                        future.set_exception(err)
                continue
            share = (time.perf_counter() - started) / len(taken)
            for (_, future), locations in zip(taken, found):
                future.set_result((locations, share))


class _InThisThread:
    """The executor of ``workers=0``: runs each task when it is submitted, in the calling thread."""

    @staticmethod
    def submit(function, *args) -> Future:
        future: Future = Future()
        try:
            future.set_result(function(*args))
        except BaseException as err:  # noqa: BLE001 - raised again by result(), as a pool's future would
            future.set_exception(err)
        return future

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


def in_detection_thread(function: Callable[[], Any]) -> Any:
    """Run ``function`` in the thread the folder pipeline detects in, and return what it returns: a
    detector warmed up there keeps its sessions for the runs that follow (imgutils keeps them per thread)."""
    return _result(_detection_thread().submit(function))


def score_images(images: Iterable[InputImage], settings: Optional[ScoringSettings] = None,
                 batch_size: Optional[int] = None, workers: Optional[int] = None, keep_images: bool = False,
                 **options: Any) -> Iterator[ImageResult]:
    """Detect and score every face of every image; one `ImageResult` per image, in order.

    :param settings: An `imgutils_facequal.ScoringSettings`; ``options`` (any of its fields,
        such as ``model_name``, ``conf_threshold`` or ``head_localisation``) replace its fields.

    The other arguments are those of `score_images_with`, which this calls with a
    `imgutils_facequal.FaceQualityDetector` of the cached classifier.
    """
    faces = load_face_quality_detector(settings=settings, **options)
    return score_images_with(faces, images, batch_size=batch_size, workers=workers, keep_images=keep_images)


def score_images_with(faces: FaceQualityDetector, images: Iterable[InputImage], batch_size: Optional[int] = None,
                      workers: Optional[int] = None, keep_images: bool = False) -> Iterator[ImageResult]:
    """Detect and score every face of every image with ``faces``; one `ImageResult` per image, in order.

    :param faces: The detector and classifier (see `imgutils_facequal.load_face_quality_detector`).
    :param batch_size: Crops per forward pass of the classifier, pooled across images;
        default the classifier's (2 on a CPU, 32 on a GPU).
    :param workers: Threads that decode, crop and preprocess ahead of the classifier, handing
        each image to the detection thread; ``0`` decodes in the calling thread, image by image;
        default the classifier's (see `FaceQualityClassifier.default_workers`).
    :param keep_images: Keep each decoded image on its result (for drawing or cropping).
    """
    if (batch_size is not None and batch_size < 1) or (workers is not None and workers < 0):
        raise ValueError('batch_size must be at least 1, and workers at least 0.')
    return _score(faces, images, batch_size or faces.classifier.default_batch_size,
                  faces.classifier.default_workers if workers is None else workers, keep_images)


def overlaps_detection(faces: FaceQualityDetector) -> bool:
    """Whether the folder pipeline detects while the classifier runs: on a GPU, and on a CPU with more than two
    cores. On two cores the detector's and the classifier's sessions, each with a thread per core, only contend
    (the pipeline measured slower than detecting and scoring image by image), so there the workers decode ahead
    and detection takes its turn with classification."""
    return faces.classifier.runs_on_gpu or (os.cpu_count() or 1) > 2


def _score(faces: FaceQualityDetector, images: Iterable[InputImage], batch_size: int, workers: int,
           keep_images: bool) -> Iterator[ImageResult]:
    import numpy as np
    model, locator = faces.classifier, faces.locator
    preprocess_in_workers = model.preprocesses_in_workers
    overlap = overlaps_detection(faces)

    def model_input(image):
        return np.asarray(model.preprocess([image])) if preprocess_in_workers else image

    def decode(item: InputImage):
        started = time.perf_counter()
        result = ImageResult(item)
        try:
            decoded = load_rgb_image(item.path if item.data is None else item.data)
            result.phash = perceptual_hash(decoded)
        except ImageLoadError as err:
            result.error = str(err) if item.data is None else f'{item.path}: {err}'
            decoded = None
        result.seconds['decoding'] = time.perf_counter() - started
        return result, decoded

    def detect_and_crop(result: ImageResult, decoded) -> _Prepared:
        if decoded is None:
            return _Prepared(result, [], [], [])
        result.size = decoded.size
        if keep_images:
            result.decoded = decoded
        try:
            locations, result.seconds['detection'] = detect(decoded)
        except DetectionError as err:  # that image fails; the run goes on
            result.error = f'{result.image.path}: {err}'
            return _Prepared(result, [], [], [])
        started = time.perf_counter()
        crops, face_input = locator.classifier_crops(decoded, locations)
        # a batch of crops made here, ahead; an image with more faces makes the rest as their batches run, so
        # what is held stays bounded by the batch size (1,500 faces are not 1,500 crops in memory at once)
        inputs = [model_input(crop()) if index < batch_size else _Deferred(crop) for index, crop in enumerate(crops)]
        prepared = _Prepared(result, locations, inputs, face_input)
        result.seconds['decoding'] += time.perf_counter() - started
        return prepared

    def prepare(item: InputImage):
        decoded = decode(item)
        return detect_and_crop(*decoded) if overlap else decoded

    def finish(prepared: _Prepared) -> ImageResult:
        result = prepared.result
        if prepared.error is not None:
            result.error = prepared.error
        else:
            result.faces = face_results(prepared.locations, [prepared.scores[index] for index in prepared.face_input])
        return result

    waiting: Deque[_Prepared] = deque()
    queued_crops: Deque[Tuple[_Prepared, int]] = deque()

    def run_batch(size: int) -> None:
        batch = [queued_crops.popleft() for _ in range(min(size, len(queued_crops)))]
        inputs = [prepared.inputs[index] for prepared, index in batch]
        inputs = [model_input(item.crop()) if isinstance(item, _Deferred) else item for item in inputs]
        started = time.perf_counter()
        probabilities = model.predict(np.concatenate(inputs) if preprocess_in_workers else model.preprocess(inputs))
        share = (time.perf_counter() - started) / len(batch)
        for (prepared, index), row in zip(batch, probabilities):
            seconds = prepared.result.seconds
            seconds['classification'] = seconds.get('classification', 0.0) + share
            try:
                prepared.scores[index], = model.scores_of(row[None])
            except ModelOutputError as err:  # that image fails, not the batch
                prepared.scores[index] = {}
                prepared.error = f'{prepared.result.image.path}: {err}'
            prepared.inputs[index] = None  # free the input as soon as it is scored

    # on a GPU the workers' images go to the detectors together (on a CPU that measured no faster)
    detect = _Detection(locator, DETECTION_BATCH if model.runs_on_gpu else 1)
    pool = _DaemonThreads(max_workers=workers, name='facequal-decode') if workers else _InThisThread()
    ahead: Deque = deque()
    iterator = iter(images)
    # images in flight: enough for two forward passes even at one face per image, so the
    # workers keep preparing the next batch while the classifier runs this one
    window = max(2 * workers, 2 * batch_size) if workers else 1
    exhausted = False
    try:
        while True:
            while len(ahead) < window and not exhausted:
                item = next(iterator, None)
                exhausted = item is None
                if not exhausted:
                    ahead.append(pool.submit(prepare, item))
            if not ahead:
                break
            prepared = _result(ahead.popleft())
            if not overlap:
                prepared = detect_and_crop(*prepared)
            waiting.append(prepared)
            queued_crops.extend((prepared, index) for index in range(len(prepared.inputs)))
            while len(queued_crops) >= batch_size:
                run_batch(batch_size)
            if exhausted and not ahead and queued_crops:
                run_batch(len(queued_crops))
            while waiting and waiting[0].complete:
                yield finish(waiting.popleft())
        while queued_crops:
            run_batch(batch_size)
        while waiting:
            yield finish(waiting.popleft())
    finally:  # done, or an interrupted consumer: drop what has not started, and wait for nothing
        pool.shutdown()
