"""Scoring face images with a face-quality classifier, in imgutils' style.

Each function takes anything imgutils' ``ImageTyping`` accepts (a path, bytes, a file
object or a PIL image) and decodes it once. ``model_name`` is a registered name
(default ``caformer_s36.head_crop``), a hub repository id or a local directory.
"""
from typing import Any, Dict, Iterable, List, Optional, Tuple

from .models import DEFAULT_MODEL, resolve_model
from .onnx_backend import FaceQualityOnnxModel, get_onnx_model
from .preprocess import load_rgb_image
from .errors import ImageLoadError

__all__ = [
    'DEFAULT_BATCH_SIZE',
    'classify_face_quality_score',
    'classify_face_quality',
    'classify_face_quality_score_batch',
    'classify_face_quality_batch',
    'load_face_quality_model',
]

DEFAULT_BATCH_SIZE = 8


def load_face_quality_model(model_name: str = DEFAULT_MODEL, revision: Optional[str] = None) -> FaceQualityOnnxModel:
    """Load (once, then from the cache) the classifier behind ``model_name``.

    Scoring functions call this for you; call it yourself to fetch the model up front or to
    read its ``classes`` and preprocessing ``stages``.

    :raises UnknownModelError: When ``model_name`` cannot be resolved.
    :raises ModelNotAvailableError: When the model's files cannot be had.
    """
    return get_onnx_model(resolve_model(model_name, revision=revision))


def _top(scores: Dict[str, float]) -> Tuple[str, float]:
    label = max(scores, key=scores.__getitem__)
    return label, scores[label]


def classify_face_quality_score(image: Any, model_name: str = DEFAULT_MODEL,
                                revision: Optional[str] = None) -> Dict[str, float]:
    """The probability of every quality class for one face image.

    :param image: A face image: path, bytes, file object or PIL image.
    :param model_name: Registered name, hub repository id (``org/name``) or local directory.
    :param revision: Hub revision (branch, tag or commit) of the repository.
    :return: ``{class: probability}`` for every class of the model, in the model's own class
        order, summing to 1.

    Example::

        >>> from imgutils_facequal import classify_face_quality_score
        >>> classify_face_quality_score('face.png')  # doctest: +SKIP
        {'poor': 0.0012, 'ok': 0.0331, 'good': 0.8875, 'excellent': 0.0782}
    """
    return classify_face_quality_score_batch([image], model_name=model_name, revision=revision)[0]


def classify_face_quality(image: Any, model_name: str = DEFAULT_MODEL,
                          revision: Optional[str] = None) -> Tuple[str, float]:
    """The most likely quality class of one face image, and its probability.

    Same arguments as :func:`classify_face_quality_score`.

    Example::

        >>> from imgutils_facequal import classify_face_quality
        >>> classify_face_quality('face.png')  # doctest: +SKIP
        ('good', 0.8875)
    """
    return _top(classify_face_quality_score(image, model_name=model_name, revision=revision))


def _chunks(items: List[Any], size: int) -> Iterable[List[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def classify_face_quality_score_batch(images: Iterable[Any], model_name: str = DEFAULT_MODEL,
                                      revision: Optional[str] = None,
                                      batch_size: int = DEFAULT_BATCH_SIZE) -> List[Dict[str, float]]:
    """Class probabilities for many face images, ``batch_size`` images per forward pass.

    :param images: Face images, each anything :func:`classify_face_quality_score` takes.
    :param batch_size: Images per forward pass of the model.
    :return: One ``{class: probability}`` per input, in input order.
    :raises ImageLoadError: When an input cannot be read; the message gives its index and name.

    Example::

        >>> from imgutils_facequal import classify_face_quality_score_batch
        >>> classify_face_quality_score_batch(['a.png', 'b.png'])  # doctest: +SKIP
        [{'poor': 0.91, 'ok': 0.08, 'good': 0.01, 'excellent': 0.0},
         {'poor': 0.0, 'ok': 0.02, 'good': 0.31, 'excellent': 0.67}]
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f'batch_size must be a positive integer, got {batch_size!r}.')
    model = load_face_quality_model(model_name, revision=revision)
    images = list(images)
    results: List[Dict[str, float]] = []
    for offset, chunk in zip(range(0, len(images), batch_size), _chunks(images, batch_size)):
        decoded = []
        for index, image in enumerate(chunk, start=offset):
            try:
                decoded.append(load_rgb_image(image))
            except ImageLoadError as err:
                if len(images) == 1:
                    raise
                raise ImageLoadError(f'Input #{index}: {err}') from err
        results.extend(model.scores(decoded))
    return results


def classify_face_quality_batch(images: Iterable[Any], model_name: str = DEFAULT_MODEL,
                                revision: Optional[str] = None,
                                batch_size: int = DEFAULT_BATCH_SIZE) -> List[Tuple[str, float]]:
    """The top quality class and its probability for many face images, batched.

    Same arguments as :func:`classify_face_quality_score_batch`; one ``(class, probability)``
    per input, in input order.
    """
    return [_top(scores) for scores in classify_face_quality_score_batch(
        images, model_name=model_name, revision=revision, batch_size=batch_size)]
