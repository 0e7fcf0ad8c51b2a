"""Scoring face images with a face-quality classifier, in imgutils' style.

Each function takes anything imgutils' ``ImageTyping`` accepts (a path, bytes, a file
object or a PIL image) and decodes it once. Common options:

* ``model_name``: a registered name (default ``caformer_s36.head_crop``), a hub
  repository id or a local directory; ``revision``: its hub revision.
* ``backend``: ``onnx`` (default, no torch), ``openvino``, ``transformers`` or ``auto``; ``device``:
  ``cpu`` or ``cuda`` (see `imgutils_facequal.load_face_quality_model`).
* ``crop``: ``full`` (default) scores the image as given, for images that are face crops
  already (or whole frames, for the baseline ``caformer_s36``); ``head`` or ``face``
  first finds the largest face and scores the crop around it; ``margin`` sets its margin.
"""
from typing import Any, Dict, Iterable, List, Optional, Tuple

from .backends import DEFAULT_BACKEND, load_face_quality_model, top_class
from .errors import ImageLoadError, NoFaceFoundError
from .geometry import box_area
from .images import describe_image_input, load_rgb_image
from .models import DEFAULT_MODEL
from .quality import face_quality_value
from .scoring import DEFAULT_MARGIN, FaceQualityDetector

__all__ = [
    'classify_face_quality_score',
    'classify_face_quality',
    'classify_face_quality_value',
    'classify_face_quality_score_batch',
    'classify_face_quality_batch',
]


def classify_face_quality_score(image: Any, model_name: str = DEFAULT_MODEL, revision: Optional[str] = None,
                                crop: str = 'full', margin: Optional[float] = None,
                                backend: str = DEFAULT_BACKEND, device: Optional[str] = None,
                                precision: str = 'fp32') -> Dict[str, float]:
    """The probability of every quality class for one face image.

    :param image: A face image: path, bytes, file object or PIL image.
    :param model_name: Registered name, hub repository id (``org/name``) or local directory.
    :param revision: Hub revision (branch, tag or commit) of the repository.
    :param crop: ``full`` (default) scores the image as given. ``head`` or ``face`` first
        finds the largest face with the ``face`` detector and scores the crop around it
        (see `imgutils_facequal.detect_face_quality`).
    :param margin: Margin per side for ``head`` and ``face`` crops, as a multiple of the box
        size (default ``DEFAULT_MARGIN``, 0.5).
    :param backend: ``onnx`` (default), ``openvino``, ``transformers`` or ``auto``.
    :param device: ``cpu``, ``cuda``...; default: the backend's choice.
    :param precision: ``fp32`` (default) or ``bf16``, the transformers and openvino backends' opt-in (see
        `imgutils_facequal.load_face_quality_model`).
    :return: ``{class: probability}`` for every class of the model, in the model's own class
        order, summing to 1.
    :raises NoFaceFoundError: With ``crop='head'`` or ``'face'``, when no face is found.

    Example:

        >>> from imgutils_facequal import classify_face_quality_score
        >>> classify_face_quality_score('face.png')  # doctest: +SKIP
        {'poor': 0.0012, 'ok': 0.0331, 'good': 0.8875, 'excellent': 0.0782}
    """
    return classify_face_quality_score_batch([image], model_name=model_name, revision=revision, crop=crop,
                                             margin=margin, backend=backend, device=device, precision=precision)[0]


def classify_face_quality(image: Any, model_name: str = DEFAULT_MODEL, revision: Optional[str] = None,
                          crop: str = 'full', margin: Optional[float] = None,
                          backend: str = DEFAULT_BACKEND, device: Optional[str] = None,
                          precision: str = 'fp32') -> Tuple[str, float]:
    """The most likely quality class of one face image, and its probability.

    Same arguments as `classify_face_quality_score`.

    Example:

        >>> from imgutils_facequal import classify_face_quality
        >>> classify_face_quality('face.png')  # doctest: +SKIP
        ('good', 0.8875)
    """
    return top_class(classify_face_quality_score(image, model_name=model_name, revision=revision, crop=crop,
                                            margin=margin, backend=backend, device=device, precision=precision))


def classify_face_quality_value(image: Any, model_name: str = DEFAULT_MODEL, revision: Optional[str] = None,
                                crop: str = 'full', margin: Optional[float] = None,
                                backend: str = DEFAULT_BACKEND, device: Optional[str] = None,
                                precision: str = 'fp32') -> float:
    """The continuous quality value in [0, 1] of one face image, for ranking and thresholds.

    The probability-weighted class rank, scaled to [0, 1] (see
    `imgutils_facequal.quality.face_quality_value`). Same arguments as
    `classify_face_quality_score`.

    Example:

        >>> from imgutils_facequal import classify_face_quality_value
        >>> classify_face_quality_value('face.png')  # doctest: +SKIP
        0.6809
    """
    return face_quality_value(classify_face_quality_score(image, model_name=model_name, revision=revision,
                                                          crop=crop, margin=margin, backend=backend, device=device,
                                                          precision=precision))


def _largest_face_crop(faces: FaceQualityDetector, decoded, original: Any):
    locations = faces.locator.locate(decoded)
    if not locations:
        raise NoFaceFoundError(
            f'No face found in image {describe_image_input(original)}, so there is no {faces.locator.crop!r} crop '
            f'to score. Pass the face crop itself with crop="full", or use detect_face_quality to score '
            f'every face an image has (none here).'
        )
    largest = max(locations, key=lambda location: box_area(location.bbox))
    return decoded.crop(largest.crop_bbox)


def classify_face_quality_score_batch(images: Iterable[Any], model_name: str = DEFAULT_MODEL,
                                      revision: Optional[str] = None, batch_size: Optional[int] = None,
                                      crop: str = 'full', margin: Optional[float] = None,
                                      backend: str = DEFAULT_BACKEND,
                                      device: Optional[str] = None, precision: str = 'fp32') -> List[Dict[str, float]]:
    """Class probabilities for many face images, ``batch_size`` images per forward pass.

    :param images: Face images, each anything `classify_face_quality_score` takes.
    :param batch_size: Images per forward pass; default 2 on a CPU, 32 on a GPU.
    :return: One ``{class: probability}`` per input, in input order.
    :raises ImageLoadError: When an input cannot be read; the message gives its index and name.

    The other options are those of `classify_face_quality_score`.

    Example:

        >>> from imgutils_facequal import classify_face_quality_score_batch
        >>> classify_face_quality_score_batch(['a.png', 'b.png'])  # doctest: +SKIP
        [{'poor': 0.91, 'ok': 0.08, 'good': 0.01, 'excellent': 0.0},
         {'poor': 0.0, 'ok': 0.02, 'good': 0.31, 'excellent': 0.67}]
    """
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f'batch_size must be a positive integer, got {batch_size!r}.')
    model = load_face_quality_model(model_name, revision=revision, backend=backend, device=device,
                                    precision=precision)
    faces = None if crop == 'full' else FaceQualityDetector(
        model, crop=crop, margin=DEFAULT_MARGIN if margin is None else margin)
    batch_size = batch_size or model.default_batch_size
    images = list(images)
    results: List[Dict[str, float]] = []
    for offset in range(0, len(images), batch_size):
        decoded = []
        for index, image in enumerate(images[offset:offset + batch_size], start=offset):
            try:
                region = load_rgb_image(image)
            except ImageLoadError as err:
                if len(images) == 1:
                    raise
                raise ImageLoadError(f'Input #{index}: {err}') from err
            decoded.append(region if faces is None else _largest_face_crop(faces, region, image))
        results.extend(model.scores(decoded))
    return results


def classify_face_quality_batch(images: Iterable[Any], model_name: str = DEFAULT_MODEL,
                                revision: Optional[str] = None, batch_size: Optional[int] = None,
                                crop: str = 'full', margin: Optional[float] = None,
                                backend: str = DEFAULT_BACKEND,
                                device: Optional[str] = None, precision: str = 'fp32') -> List[Tuple[str, float]]:
    """The top quality class and its probability for many face images, batched.

    Same arguments as `classify_face_quality_score_batch`; one ``(class, probability)``
    per input, in input order.
    """
    return [top_class(scores) for scores in classify_face_quality_score_batch(
        images, model_name=model_name, revision=revision, batch_size=batch_size, crop=crop, margin=margin,
        backend=backend, device=device, precision=precision)]
