"""Detect, then score: find every face with a registered detector and score its crop.

Crops follow how the models were trained (see :mod:`imgutils_facequal.geometry`):

* ``crop='head'``: the head box plus ``margin`` per side (the default for the head-crop
  model, whose training crops held the whole head with a random margin).
* ``crop='face'``: the detector's own box plus ``margin`` per side.
* ``crop='full'``: the whole frame (the default for the framing-sensitive baseline
  ``caformer_s36``, which was trained on whole frames only).

The image is decoded once, and all crops of an image go through the classifier in one
batched forward pass.
"""
import warnings
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

from .errors import FaceQualityError
from .geometry import crop_box, face_to_head_box, pair_faces_with_heads
from .models import DEFAULT_MODEL, ModelSource, resolve_model
from .plugins import get_detector, get_tagger
from .preprocess import load_rgb_image
from .quality import face_quality_value, quality_at_least

__all__ = [
    'CROP_MODES',
    'DEFAULT_MARGIN',
    'NoFaceFoundError',
    'FaceLocation',
    'FaceQualityResult',
    'FaceTags',
    'locate_faces',
    'detect_face_quality',
    'tag_faces',
    'visualize_face_quality',
]

CROP_MODES = ('head', 'face', 'full')

#: Margin per side, as a multiple of the box size: the mean of a uniform draw from [0, 1],
#: inside the range the head-crop model was trained and evaluated on (0 to 4 in the card).
DEFAULT_MARGIN = 0.5

_FRAMING_WARNING = (
    'Model {model!r} is framing-sensitive: it was trained on whole frames and reads how much '
    'of the frame the head fills. On crops its model card measured macro-F1 falling from 0.920 '
    '(full frames) to 0.440 (margin 1x head) and 0.249, chance level, on head-only crops. '
    'Use crop="full" with it, or use the default model caformer_s36.head_crop for crops.'
)
_warned_framing = set()


class NoFaceFoundError(FaceQualityError, ValueError):
    """A crop around a face was asked for, but the detector found no face in the image."""


class FaceLocation(NamedTuple):
    """Where a face is, and the crop that will be scored."""
    bbox: Tuple[int, int, int, int]
    detection_label: str
    detection_score: float
    head_bbox: Optional[Tuple[float, float, float, float]]
    crop_bbox: Tuple[int, int, int, int]


class FaceQualityResult(NamedTuple):
    """One scored face. The first three fields read like an imgutils detection.

    :ivar bbox: The detector's box ``(x0, y0, x1, y1)``.
    :ivar label: The most likely quality class.
    :ivar score: Its probability.
    :ivar scores: Every class with its probability, in the model's class order.
    :ivar quality: The continuous quality value in [0, 1] (see :mod:`imgutils_facequal.quality`).
    :ivar detection_score: The detector's confidence.
    :ivar head_bbox: The head box the crop was built on (``None`` unless ``crop='head'``).
    :ivar crop_bbox: The region of the image the classifier saw.
    """
    bbox: Tuple[int, int, int, int]
    label: str
    score: float
    scores: Dict[str, float]
    quality: float
    detection_score: float
    head_bbox: Optional[Tuple[float, float, float, float]]
    crop_bbox: Tuple[int, int, int, int]

    def as_detection(self) -> Tuple[Tuple[int, int, int, int], str, float]:
        """The plain imgutils detection triple ``(bbox, label, score)``."""
        return self.bbox, self.label, self.score


class FaceTags(NamedTuple):
    """One face with the results of several taggers, by tagger name."""
    bbox: Tuple[int, int, int, int]
    detection_label: str
    detection_score: float
    head_bbox: Optional[Tuple[float, float, float, float]]
    crop_bbox: Tuple[int, int, int, int]
    tags: Dict[str, Any]


def _check_crop(crop: str, margin: float) -> None:
    if crop not in CROP_MODES:
        raise ValueError(f'crop must be one of {", ".join(CROP_MODES)}; got {crop!r}.')
    if not isinstance(margin, (int, float)) or margin < 0:
        raise ValueError(f'margin is a multiple of the box size per side, 0 or more; got {margin!r}.')


def default_crop_for(source: ModelSource) -> str:
    """The crop mode matching how a model was trained: ``full`` for framing-sensitive ones."""
    return source.info.default_crop if source.info is not None else 'head'


def warn_if_framing_sensitive(source: ModelSource, crop: str) -> None:
    """Warn once per model when a framing-sensitive model is given anything but whole frames."""
    if source.framing_sensitive and crop != 'full' and source.model_name not in _warned_framing:
        _warned_framing.add(source.model_name)
        warnings.warn(_FRAMING_WARNING.format(model=source.model_name), UserWarning, stacklevel=3)


def _detector_options(conf_threshold, iou_threshold, level, version, detector_model_name) -> Dict[str, Any]:
    options = {'conf_threshold': conf_threshold, 'iou_threshold': iou_threshold, 'level': level,
               'version': version, 'model_name': detector_model_name}
    return {key: value for key, value in options.items() if value is not None}


def locate_faces(image, detector: str = 'face', crop: str = 'head', margin: float = DEFAULT_MARGIN,
                 head_detector: Optional[str] = 'head', detector_options: Optional[Dict[str, Any]] = None,
                 head_detector_options: Optional[Dict[str, Any]] = None) -> List[FaceLocation]:
    """Detect faces in a decoded image and work out each one's crop.

    With ``crop='head'``, each face is paired with the smallest ``head_detector`` box that
    holds it, else its head box is estimated from the face box
    (:func:`imgutils_facequal.geometry.face_to_head_box`). With ``detector='head'`` the
    detections are head boxes already. ``head_detector=None`` always estimates.
    """
    _check_crop(crop, margin)
    size = image.size
    detections = get_detector(detector)(image, **(detector_options or {}))
    boxes = [tuple(bbox) for bbox, _, _ in detections]

    heads: List[Optional[Tuple[float, ...]]] = [None] * len(boxes)
    if crop == 'head' and boxes:
        if detector == 'head':
            heads = [tuple(map(float, box)) for box in boxes]
        else:
            head_boxes = []
            if head_detector is not None:
                head_boxes = [tuple(bbox) for bbox, _, _ in get_detector(head_detector)(
                    image, **(head_detector_options or {}))]
            pairs = pair_faces_with_heads(boxes, head_boxes)
            heads = [tuple(map(float, head_boxes[index])) if index is not None else face_to_head_box(box)
                     for box, index in zip(boxes, pairs)]

    locations = []
    for (bbox, label, score), head in zip(detections, heads):
        if crop == 'full':
            region = (0, 0, size[0], size[1])
        elif crop == 'head':
            region = crop_box(head, margin, size)
        else:
            region = crop_box(bbox, margin, size)
        locations.append(FaceLocation(tuple(bbox), label, float(score), head, region))
    return locations


def _crops(image, locations: Sequence[FaceLocation]):
    return [image.crop(location.crop_bbox) for location in locations]


def detect_face_quality(image, detector: str = 'face', model_name: str = DEFAULT_MODEL,
                        crop: Optional[str] = None, margin: float = DEFAULT_MARGIN,
                        min_quality: Optional[str] = None, conf_threshold: Optional[float] = None,
                        iou_threshold: Optional[float] = None, level: Optional[str] = None,
                        version: Optional[str] = None, detector_model_name: Optional[str] = None,
                        head_detector: Optional[str] = 'head', revision: Optional[str] = None,
                        backend: str = 'onnx', device: Optional[str] = None,
                        precision: str = 'fp32') -> List[FaceQualityResult]:
    """Find every face in an image and score its quality.

    :param image: Anything imgutils' ``ImageTyping`` accepts; decoded once.
    :param detector: A registered detector (``face`` or ``head`` built in; see
        :func:`imgutils_facequal.list_detectors`).
    :param model_name: The face-quality model (registered name, hub repo id or directory).
    :param crop: ``head``, ``face`` or ``full``; ``None`` picks the one the model was trained
        for (``head`` for ``caformer_s36.head_crop``, ``full`` for ``caformer_s36``).
    :param margin: Margin per side as a multiple of the box size (``head`` and ``face`` crops).
    :param min_quality: Keep only faces whose class is this one or better (e.g. ``'good'``).
    :param conf_threshold: Detector confidence threshold (detector's default when ``None``).
    :param iou_threshold: Detector NMS IoU threshold.
    :param level: Detector model level (``'s'``, ``'n'``...), as in imgutils.
    :param version: Face detector version (e.g. ``'v1.4'``), as in imgutils.
    :param detector_model_name: The detector's own model name, as in imgutils.
    :param head_detector: Detector used to find head boxes for ``crop='head'``; ``None`` to
        estimate them from the face boxes.
    :param revision: Hub revision of the face-quality model.
    :param backend: ``onnx`` (default), ``openvino``, ``transformers`` or ``auto`` (see
        :func:`imgutils_facequal.backends.load_face_quality_model`).
    :param device: ``cpu``, ``cuda``...; default: the backend's choice.
    :param precision: ``fp32`` (default) or ``bf16``, the transformers and openvino backends' opt-in (see
        :func:`imgutils_facequal.backends.load_face_quality_model`).
    :return: One :class:`FaceQualityResult` per face, in the detector's order.

    Example::

        >>> from imgutils_facequal import detect_face_quality
        >>> for face in detect_face_quality('frame.png'):  # doctest: +SKIP
        ...     print(face.bbox, face.label, round(face.score, 3), round(face.quality, 3))
        (412, 95, 590, 280) good 0.912 0.687
    """
    source = resolve_model(model_name, revision=revision)
    crop = crop or default_crop_for(source)
    warn_if_framing_sensitive(source, crop)
    decoded = load_rgb_image(image)
    locations = locate_faces(
        decoded, detector=detector, crop=crop, margin=margin, head_detector=head_detector,
        detector_options=_detector_options(conf_threshold, iou_threshold, level, version, detector_model_name),
    )
    if not locations:
        return []
    tagger = get_tagger('face_quality')
    options = {'model_name': model_name, 'revision': revision, 'backend': backend, 'device': device}
    if precision != 'fp32':  # so that taggers from before the option keep working
        options['precision'] = precision
    if crop == 'full':  # every face sees the same frame: score it once
        all_scores = tagger(_crops(decoded, locations[:1]), **options) * len(locations)
    else:
        all_scores = tagger(_crops(decoded, locations), **options)

    results = []
    for location, scores in zip(locations, all_scores):
        label = max(scores, key=scores.__getitem__)
        if min_quality is not None and not quality_at_least(label, min_quality, list(scores)):
            continue
        results.append(FaceQualityResult(
            bbox=location.bbox, label=label, score=scores[label], scores=scores,
            quality=face_quality_value(scores), detection_score=location.detection_score,
            head_bbox=location.head_bbox, crop_bbox=location.crop_bbox,
        ))
    return results


def tag_faces(image, taggers: Sequence[str] = ('face_quality',), detector: str = 'face',
              crop: str = 'head', margin: float = DEFAULT_MARGIN,
              tagger_options: Optional[Dict[str, Dict[str, Any]]] = None,
              detector_options: Optional[Dict[str, Any]] = None,
              head_detector: Optional[str] = 'head') -> List[FaceTags]:
    """Run several registered taggers over the same face crops.

    :param taggers: Names of registered taggers (see :func:`imgutils_facequal.list_taggers`).
    :param tagger_options: Per tagger, keyword options, e.g.
        ``{'face_quality': {'model_name': 'caformer_s36.head_crop'}}``.
    :param detector_options: Keyword options for the detector (``conf_threshold``...).
    :return: One :class:`FaceTags` per face, its ``tags`` holding each tagger's result.

    Example::

        >>> from imgutils_facequal import tag_faces
        >>> tag_faces('frame.png', taggers=['face_quality'])[0].tags['face_quality']  # doctest: +SKIP
        {'poor': 0.001, 'ok': 0.02, 'good': 0.91, 'excellent': 0.069}
    """
    resolved = [get_tagger(name) for name in taggers]
    decoded = load_rgb_image(image)
    locations = locate_faces(decoded, detector=detector, crop=crop, margin=margin,
                             head_detector=head_detector, detector_options=detector_options)
    crops = _crops(decoded, locations)
    per_tagger = {}
    for tagger in resolved:
        outputs = list(tagger(crops, **(tagger_options or {}).get(tagger.name, {}))) if crops else []
        if len(outputs) != len(crops):
            raise FaceQualityError(
                f'Tagger {tagger.name!r} (plugin {tagger.plugin!r}) returned {len(outputs)} results '
                f'for {len(crops)} crops; a tagger must return one result per crop.'
            )
        per_tagger[tagger.name] = outputs
    return [FaceTags(*location, tags={name: outputs[index] for name, outputs in per_tagger.items()})
            for index, location in enumerate(locations)]


def visualize_face_quality(image, results: Sequence[FaceQualityResult], **options):
    """Draw scored faces with their quality labels, through imgutils' ``detection_visualize``.

    ``options`` go to ``detection_visualize`` (``fontsize``, ``max_short_edge_size``...).
    Every class of the model is passed as a label, so each class keeps its colour from one
    image to the next. Plain ``(bbox, label, score)`` triples are drawn too.

    Example::

        >>> from imgutils_facequal import detect_face_quality, visualize_face_quality
        >>> image = 'frame.png'
        >>> visualize_face_quality(image, detect_face_quality(image)).save('boxed.png')  # doctest: +SKIP
    """
    from ._imgutils import detect_module
    detections = [result.as_detection() if isinstance(result, FaceQualityResult) else tuple(result[:3])
                  for result in results]
    if results and isinstance(results[0], FaceQualityResult):
        options.setdefault('labels', list(results[0].scores))
    return detect_module().detection_visualize(load_rgb_image(image), detections, **options)
