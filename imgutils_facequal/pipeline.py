"""Scoring many images: folder walking, parallel decoding, crops from several images per
forward pass, results in input order. The command-line tool is built on this.

Images are decoded, run through the detector, cropped and preprocessed into the
classifier's input in worker threads while the main thread only runs forward passes, so
all of that overlaps inference (on a GPU it would otherwise leave the GPU waiting). The
one exception is the transformers backend on a CPU: its preprocessing runs torch
operations, whose thread pools would fight the forward pass for the cores, so the main
thread preprocesses each batch just before running it.

Detection runs in a thread of its own, one image at a time, which the workers hand their
decoded images to: imgutils opens a session per detector per calling thread, each with a
thread per core, so detecting in every worker loads the detectors once per worker and
leaves their sessions fighting over the cores.

The crops of consecutive images are pooled into forward passes of ``batch_size`` crops.
A file that cannot be read yields a result with ``error`` set, and the run goes on.
"""
import glob
import os
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Deque, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from .detect import DEFAULT_MARGIN, FaceQualityResult, default_crop_for, locate_faces, warn_if_framing_sensitive
from .errors import ImageLoadError
from .models import DEFAULT_MODEL, resolve_model
from .preprocess import load_rgb_image
from .quality import face_quality_value

__all__ = ['IMAGE_EXTENSIONS', 'InputImage', 'ImageResult', 'find_images', 'score_images']

#: File extensions picked up when walking folders (files named explicitly are always taken).
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.webp', '.bmp', '.gif', '.tif', '.tiff', '.jfif', '.avif')


@dataclass(frozen=True)
class InputImage:
    """An image path and the folder it was found under (for relative output paths)."""
    path: str
    root: str

    @property
    def relative_path(self) -> str:
        return os.path.relpath(self.path, self.root)


def find_images(paths: Sequence[str]) -> List[InputImage]:
    """Files, folders (walked recursively, image extensions only) and globs, in a stable order.

    A path that is neither a file, a folder nor a glob that matches something is kept, so
    that the run reports it as an error instead of skipping it silently.
    """
    found: List[InputImage] = []
    seen = set()

    def add(path: str, root: str) -> None:
        key = os.path.abspath(path)
        if key not in seen:
            seen.add(key)
            found.append(InputImage(path, root))

    for path in paths:
        if os.path.isdir(path):
            for directory, subdirectories, files in os.walk(path):
                subdirectories.sort()
                for name in sorted(files):
                    if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith('.'):
                        add(os.path.join(directory, name), path)
        elif os.path.lexists(path):
            add(path, os.path.dirname(path) or '.')
        else:
            matches = sorted(glob.glob(path, recursive=True))
            if not matches:
                add(path, os.path.dirname(path) or '.')
            for match in matches:
                if os.path.isdir(match):
                    for item in find_images([match]):
                        add(item.path, item.root)
                else:
                    add(match, os.path.dirname(match) or '.')
    return found


@dataclass
class ImageResult:
    """The outcome for one input image: its faces, or the reason it failed."""
    image: InputImage
    faces: List[FaceQualityResult] = field(default_factory=list)
    error: Optional[str] = None
    size: Optional[Tuple[int, int]] = None
    decoded: Any = None  # the decoded PIL image, when keep_images=True


@dataclass
class _Prepared:
    result: ImageResult
    locations: list
    inputs: list  # one classifier input (or crop, see score_images) per crop, dropped once scored
    face_crop_index: List[int]
    scores: Dict[int, Dict[str, float]] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return len(self.scores) == len(self.inputs)


_detection_pools: Dict[int, ThreadPoolExecutor] = {}
_detection_pools_lock = threading.Lock()


def _detection_pool(threads: int) -> ThreadPoolExecutor:
    # kept for the life of the process: imgutils opens its sessions per thread, so fresh
    # threads would load the detectors again on every call
    with _detection_pools_lock:
        if threads not in _detection_pools:
            _detection_pools[threads] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix='facequal-detect')
        return _detection_pools[threads]


def score_images(images: Iterable[InputImage], model_name: str = DEFAULT_MODEL, revision: Optional[str] = None,
                 backend: str = 'onnx', device: Optional[str] = None, detector: str = 'face',
                 crop: Optional[str] = None, margin: float = DEFAULT_MARGIN, head_detector: Optional[str] = 'head',
                 detector_options: Optional[Dict[str, Any]] = None, batch_size: Optional[int] = None,
                 workers: Optional[int] = None, keep_images: bool = False,
                 concurrent_detections: int = 1, precision: str = 'fp32') -> Iterator[ImageResult]:
    """Detect and score every face of every image; one :class:`ImageResult` per image, in order.

    :param batch_size: Crops per forward pass of the classifier, pooled across images;
        default 2 on a CPU, 32 on a GPU.
    :param workers: Threads that decode, crop and preprocess ahead of the classifier, handing
        each image to the detection thread; default 2 on a CPU, 8 on a GPU (see
        :func:`imgutils_facequal.backends.default_workers`).
    :param keep_images: Keep each decoded image on its result (for drawing or cropping).
    :param concurrent_detections: Threads that run the detectors, each on one image at a
        time with its own sessions (imgutils keeps them per thread). One is fastest with
        imgutils' CPU sessions, which already use every core (``benchmarks/gpu_performance.py``).
    :param precision: ``fp32`` (default) or ``bf16``, the transformers and openvino backends' opt-in (see
        :func:`imgutils_facequal.backends.load_face_quality_model`).
    """
    if any(value is not None and value < 1 for value in (batch_size, workers, concurrent_detections)):
        raise ValueError('batch_size, workers and concurrent_detections must be at least 1.')
    import numpy as np
    from .backends import (FaceQualityTransformersModel, default_batch_size, default_workers, load_face_quality_model,
                           runs_on_gpu)
    source = resolve_model(model_name, revision=revision)
    crop = crop or default_crop_for(source)
    warn_if_framing_sensitive(source, crop)
    # loaded before any image, so a model that cannot be had fails fast
    model = load_face_quality_model(model_name, revision=revision, backend=backend, device=device,
                                    precision=precision)
    batch_size = batch_size or default_batch_size(model)
    workers = workers or default_workers(model)
    # torch's preprocessing in the workers would start thread pools that fight the forward
    # pass for the cores; on a CPU it runs in the main thread, just before the forward pass
    preprocess_in_workers = not (isinstance(model, FaceQualityTransformersModel) and not runs_on_gpu(model))

    def model_input(image):
        return np.asarray(model.preprocess([image])) if preprocess_in_workers else image

    def prepare(item: InputImage) -> _Prepared:
        result = ImageResult(item)
        try:
            decoded = load_rgb_image(item.path)
        except ImageLoadError as err:
            result.error = str(err)
            return _Prepared(result, [], [], [])
        result.size = decoded.size
        if keep_images:
            result.decoded = decoded
        locations = detection_pool.submit(locate_faces, decoded, detector=detector, crop=crop, margin=margin,
                                          head_detector=head_detector, detector_options=detector_options).result()
        if crop == 'full' and locations:  # every face sees the whole frame: score it once
            return _Prepared(result, locations, [model_input(decoded)], [0] * len(locations))
        return _Prepared(result, locations, [model_input(decoded.crop(loc.crop_bbox)) for loc in locations],
                         list(range(len(locations))))

    def finish(prepared: _Prepared) -> ImageResult:
        result = prepared.result
        for location, crop_index in zip(prepared.locations, prepared.face_crop_index):
            scores = prepared.scores[crop_index]
            label = max(scores, key=scores.__getitem__)
            result.faces.append(FaceQualityResult(
                bbox=location.bbox, label=label, score=scores[label], scores=scores,
                quality=face_quality_value(scores), detection_score=location.detection_score,
                head_bbox=location.head_bbox, crop_bbox=location.crop_bbox,
            ))
        return result

    waiting: Deque[_Prepared] = deque()
    queued_crops: Deque[Tuple[_Prepared, int]] = deque()

    def run_batch(size: int) -> None:
        batch = [queued_crops.popleft() for _ in range(min(size, len(queued_crops)))]
        inputs = [prepared.inputs[index] for prepared, index in batch]
        probabilities = model.predict(np.concatenate(inputs) if preprocess_in_workers else model.preprocess(inputs))
        for (prepared, index), row in zip(batch, probabilities):
            prepared.scores[index] = dict(zip(model.classes, map(float, row)))
            prepared.inputs[index] = None  # free the input as soon as it is scored

    detection_pool = _detection_pool(concurrent_detections)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix='facequal-decode') as pool:
        ahead: Deque = deque()
        iterator = iter(images)
        # images in flight: enough for two forward passes even at one face per image, so the
        # workers keep preparing the next batch while the classifier runs this one
        window = max(2 * workers, 2 * batch_size)
        try:
            while True:
                while len(ahead) < window:
                    item = next(iterator, None)
                    if item is None:
                        break
                    ahead.append(pool.submit(prepare, item))
                if not ahead:
                    break
                prepared = ahead.popleft().result()
                waiting.append(prepared)
                queued_crops.extend((prepared, index) for index in range(len(prepared.inputs)))
                while len(queued_crops) >= batch_size:
                    run_batch(batch_size)
                if not ahead and queued_crops:
                    run_batch(len(queued_crops))
                while waiting and waiting[0].complete:
                    yield finish(waiting.popleft())
            while queued_crops:
                run_batch(batch_size)
            while waiting:
                yield finish(waiting.popleft())
        finally:  # an interrupted consumer: drop what has not started
            for future in ahead:
                future.cancel()
