"""Detect, then score: a loaded classifier with the detector and crop rules that feed it.

`FaceQualityDetector` holds a loaded classifier (see
`imgutils_facequal.load_face_quality_model`) and the detector, the crop, the margin,
the head detector and the detector options. Every route from an image to scored faces
goes through it: ``detect_face_quality``, ``tag_faces``, ``classify_face_quality`` with a
crop, and the folder pipeline. Crops follow how the models were trained (see
`imgutils_facequal.geometry`):

* ``crop='head'``: the head box plus ``margin`` per side (the default for the head-crop
  model, whose training crops held the whole head with a random margin);
* ``crop='face'``: the detector's own box plus ``margin`` per side;
* ``crop='full'``: the whole frame (the default for the framing-sensitive baseline
  ``caformer_s36``, which was trained on whole frames only).

Head boxes come from one of three `HEAD_LOCALISATIONS`: ``'estimated'`` (the default) runs
the face detector and estimates each head box from its face box, one detector pass per
image; ``'paired'`` runs the face detector, then the head detector, and pairs each face
with its head; ``'heads'`` runs the head detector alone and derives each face box from its
head box. ``head_level`` and ``head_infer_size`` make the head detector itself
cheaper. Each changes the boxes: see the performance page for how much.
"""
import functools
import warnings
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

from .backends import FaceQualityClassifier, load_face_quality_model, top_class
from .geometry import (FACE_TO_HEAD_EXPANSION, clip_box, crop_box, face_to_head_box, normalize_box,
                       pair_faces_with_heads)
from .images import load_rgb_image
from .models import ModelSource
from .plugins import get_detector
from .quality import face_quality_value
from .settings import CLASSIFIER_FIELDS, CROP_MODES, DEFAULT_MARGIN, HEAD_LOCALISATIONS, ScoringSettings

__all__ = [
    'CROP_MODES',
    'HEAD_LOCALISATIONS',
    'DEFAULT_MARGIN',
    'FaceLocation',
    'FaceQualityResult',
    'FaceLocator',
    'FaceQualityDetector',
    'load_face_quality_detector',
    'face_results',
    'default_crop_for',
]


_FRAMING_WARNING = (
    'Model {model!r} is framing-sensitive: it was trained on whole frames and reads how much '
    'of the frame the head fills. On crops its model card measured macro-F1 falling from 0.920 '
    '(full frames) to 0.440 (margin 1x head) and 0.249, chance level, on head-only crops. '
    'Use crop="full" with it, or use the default model caformer_s36.head_crop for crops.'
)
_warned_framing = set()


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
    :ivar quality: The continuous quality value in [0, 1] (see `imgutils_facequal.quality`).
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


def face_results(locations: Sequence[FaceLocation], scores: Sequence[Dict[str, float]]) -> List[FaceQualityResult]:
    """One `FaceQualityResult` per located face, from its class probabilities."""
    results = []
    for location, face_scores in zip(locations, scores):
        label, score = top_class(face_scores)
        results.append(FaceQualityResult(
            bbox=location.bbox, label=label, score=score, scores=face_scores, quality=face_quality_value(face_scores),
            detection_score=location.detection_score, head_bbox=location.head_bbox, crop_bbox=location.crop_bbox,
        ))
    return results


def default_crop_for(source: ModelSource) -> str:
    """The crop mode matching how a model was trained: ``full`` for framing-sensitive ones."""
    return source.info.default_crop if source.info is not None else 'head'


def _warn_if_framing_sensitive(source: ModelSource, crop: str) -> None:
    if source.framing_sensitive and crop != 'full' and source.model_name not in _warned_framing:
        _warned_framing.add(source.model_name)
        warnings.warn(_FRAMING_WARNING.format(model=source.model_name), UserWarning, stacklevel=4)


def _face_box_from_head(head_box) -> Tuple[int, int, int, int]:
    """The face box whose `face_to_head_box` is ``head_box`` (its inverse), in whole pixels."""
    x0, y0, x1, y1 = normalize_box(head_box)
    grow = FACE_TO_HEAD_EXPANSION
    width = (x1 - x0) / (1 + grow['left'] + grow['right'])
    height = (y1 - y0) / (1 + grow['top'] + grow['bottom'])
    left, top = x0 + grow['left'] * width, y0 + grow['top'] * height
    return round(left), round(top), round(left + width), round(top + height)


def _inside(box, image_size) -> Optional[tuple]:
    """The part of a detector's box inside the image (`imgutils_facequal.geometry.clip_box`), in whole pixels
    where its corners are; ``None`` when no area of it is inside."""
    clipped = clip_box(box, image_size)
    return None if clipped is None else tuple(int(value) if value.is_integer() else value for value in clipped)


class FaceLocator:
    """The rules that find the faces of an image and the crop each one is scored on; no model.

    It takes the locating fields of `imgutils_facequal.ScoringSettings` (``detector`` and its
    options, ``crop``, ``margin``, ``head_detector`` and its options, ``head_localisation``),
    as a ``settings`` object or as keyword arguments; the classifier's fields are ignored.
    ``crop=None`` means ``head`` here (`FaceQualityDetector` picks the model's own).

    * ``head_localisation='estimated'`` (default): ``detector`` finds the faces and each
      head box is estimated from its face box (`imgutils_facequal.geometry.face_to_head_box`):
      one detector pass, the faces the model was trained on.
    * ``head_localisation='paired'``: ``detector`` finds the faces, then ``head_detector``
      the heads, and each face is paired with its head (two passes; the head box as
      detected).
    * ``head_localisation='heads'``: ``head_detector`` alone finds the heads and each face box
      is derived from its head box (the inverse of
      `imgutils_facequal.geometry.face_to_head_box`); ``detector`` does not run. One detector
      pass instead of two; the face boxes are estimates.
    * ``head_level='n'`` (the smaller graph) and ``head_infer_size=320`` (a quarter of the
      pixels) make the head detector itself cheaper.

    Example:

        >>> from imgutils_facequal import FaceLocator
        >>> locator = FaceLocator(head_localisation='heads', head_infer_size=320)
        >>> locator.head_detector_options
        {'infer_size': 320}
        >>> [face.head_bbox for face in locator.locate(image)]  # doctest: +SKIP
        [(96.0, 40.0, 288.0, 232.0)]
    """

    def __init__(self, settings: Optional[ScoringSettings] = None, **options: Any):
        settings = ScoringSettings.merged(settings, **options)
        if settings.head_detector is not None:
            get_detector(settings.head_detector)
        get_detector(settings.detector)  # an unknown name fails here, before any image
        self.settings = settings
        self.detector = settings.detector
        self.crop = settings.crop or 'head'
        self.margin = settings.margin
        self.head_detector = settings.head_detector
        self.detector_options = settings.detector_options
        self.head_localisation = settings.head_localisation
        self.head_detector_options = settings.head_detector_options

    def locate(self, image) -> List[FaceLocation]:
        """Detect the faces of a decoded image and work out each one's crop.

        With ``crop='head'``, each face's head box is estimated from its face box
        (``head_localisation='estimated'``), or it is the smallest head-detector box that holds
        the face, else the estimate (``'paired'``). With ``detector='head'`` the detections are
        head boxes already. With ``'heads'`` the head detector alone runs and each face box is
        derived from its head.
        """
        return self._locations(image, *self._passes([image], batched=False)[0])

    def locate_batch(self, images: Sequence) -> List[List[FaceLocation]]:
        """`locate` on each of several decoded images: the same faces and crops, one list per image.

        Each detector pass runs on the images at once, through the detector's batch path
        (several images per run of the built-in detectors' graphs; image by image for a
        plugin's detector that has no ``detect_batch``).
        """
        images = list(images)
        return [self._locations(image, *found) for image, found in zip(images, self._passes(images, batched=True))]

    def _passes(self, images: list, batched: bool) -> List[tuple]:
        """``(detections, head detections or None)`` of each image: the first pass (the head detector's
        with ``'heads'``, else the detector's), and the head detector's where faces are paired with heads."""
        def run(name, options, chosen):
            if not chosen:
                return []
            detector = get_detector(name)
            return detector.batch(chosen, **options) if batched else [detector(image, **options) for image in chosen]

        if self.head_localisation == 'heads':
            first = run(self.head_detector, self.head_detector_options, images)
        else:
            first = run(self.detector, self.detector_options, images)
        pairs = (self.crop == 'head' and self.head_localisation == 'paired' and self.detector != 'head'
                 and self.head_detector is not None)
        wanted = [index for index, found in enumerate(first) if pairs and found]
        heads = dict(zip(wanted, run(self.head_detector, self.head_detector_options, [images[i] for i in wanted])))
        return [(found, heads.get(index)) for index, found in enumerate(first)]

    def _locations(self, image, found: list, found_heads: Optional[list]) -> List[FaceLocation]:
        """The faces of an image and their crops, from its detector passes (see `_passes`)."""
        size = image.size
        heads: List[Optional[Tuple[float, ...]]]
        if self.head_localisation == 'heads':
            found = [(head, _inside(_face_box_from_head(head), size), score) for head, _, score in found
                     if _inside(head, size) is not None]
            found = [(head, face, score) for head, face, score in found if face is not None]
            detections = [(face, 'face', score) for _, face, score in found]
            heads = [tuple(map(float, head)) if self.crop == 'head' else None for head, _, _ in found]
            boxes = [bbox for bbox, _, _ in detections]
        else:  # a box is cut to the image; one with nothing inside it is no face
            detections = [(_inside(bbox, size), label, score, *rest) for bbox, label, score, *rest in found]
            detections = [detection for detection in detections if detection[0] is not None]
            boxes = [bbox for bbox, *_ in detections]
            heads = [None] * len(boxes)
        if self.crop == 'head' and boxes and self.head_localisation != 'heads':
            if self.detector == 'head':
                heads = [tuple(map(float, box)) for box in boxes]
            else:
                head_boxes = [tuple(bbox) for bbox, _, _ in found_heads or []]
                pairs = pair_faces_with_heads(boxes, head_boxes)
                heads = [tuple(map(float, head_boxes[index])) if index is not None else face_to_head_box(box)
                         for box, index in zip(boxes, pairs)]

        locations = []
        for (bbox, label, score, *_), head in zip(detections, heads):
            if self.crop == 'full':
                region = (0, 0, size[0], size[1])
            elif self.crop == 'head':
                region = crop_box(head, self.margin, size)
            else:
                region = crop_box(bbox, self.margin, size)
            locations.append(FaceLocation(tuple(bbox), label, float(score), head, region))
        return locations

    def classifier_inputs(self, image, locations: Sequence[FaceLocation]) -> Tuple[list, List[int]]:
        """The images a classifier sees for these faces, and which one each face is scored on.

        With ``crop='full'`` every face sees the same frame, so it is scored once. Every crop is
        made at once: `classifier_crops` makes them one at a time.
        """
        crops, face_input = self.classifier_crops(image, locations)
        return [crop() for crop in crops], face_input

    def classifier_crops(self, image, locations: Sequence[FaceLocation]) -> Tuple[List[Callable[[], Any]],
                                                                                  List[int]]:
        """As `classifier_inputs`, each image a call that makes it: a caller that makes, scores and drops a
        batch of crops at a time holds a batch of them, however many faces the image has."""
        if self.crop == 'full':
            return ([lambda: image] if locations else []), [0] * len(locations)
        return [functools.partial(image.crop, location.crop_bbox) for location in locations], \
            list(range(len(locations)))


class FaceQualityDetector:
    """A loaded classifier and the `FaceLocator` rules that find and crop the faces it scores.

    :param classifier: A loaded classifier (`imgutils_facequal.load_face_quality_model`).
    :param settings: The `imgutils_facequal.ScoringSettings` of the detector, the crop and the
        head detector; keyword arguments replace its fields. The classifier's own fields are
        taken from ``classifier``. ``crop=None`` picks the crop the model was trained for
        (``head`` for ``caformer_s36.head_crop``, ``full`` for ``caformer_s36``).

    It is cheap to build, safe to share between threads, and pickles as its settings (the
    classifier is loaded again, once, in the process that unpickles it).

    Example:

        >>> from imgutils_facequal import FaceQualityDetector, load_face_quality_model
        >>> detector = FaceQualityDetector(load_face_quality_model(), crop='head', margin=0.5)  # doctest: +SKIP
        >>> [face.label for face in detector.detect('frame.png')]  # doctest: +SKIP
        ['good', 'excellent', 'poor']
    """

    def __init__(self, classifier: FaceQualityClassifier, settings: Optional[ScoringSettings] = None,
                 **options: Any):
        settings = ScoringSettings.merged(settings, **options)
        crop = settings.crop or default_crop_for(classifier.source)
        self.classifier = classifier
        #: The `imgutils_facequal.ScoringSettings` that build it again, the crop resolved.
        self.settings = ScoringSettings.merged(settings, crop=crop, **classifier.settings)
        self.locator = FaceLocator(self.settings)
        _warn_if_framing_sensitive(classifier.source, crop)

    def __reduce__(self):
        return FaceQualityDetector, (self.classifier, self.settings)

    def __repr__(self) -> str:
        changed = {name: value for name, value in self.settings.as_dict().items()
                   if name not in CLASSIFIER_FIELDS and value != getattr(_DEFAULTS, name)}
        return f'<FaceQualityDetector {self.classifier!r} ' + ' '.join(f'{k}={v!r}' for k, v in changed.items()) + '>'

    def detect(self, image) -> List[FaceQualityResult]:
        """Every face of an image (anything imgutils' ``ImageTyping`` accepts), scored, in the detector's order."""
        decoded = load_rgb_image(image)
        locations = self.locator.locate(decoded)
        crops, face_input = self.locator.classifier_crops(decoded, locations)
        # crops made a batch at a time, however many faces there are
        scores = self.classifier.scores_in_batches(crop() for crop in crops)
        return face_results(locations, [scores[index] for index in face_input])


def load_face_quality_detector(model_name: Optional[str] = None, settings: Optional[ScoringSettings] = None,
                               **options: Any) -> FaceQualityDetector:
    """A `FaceQualityDetector` from settings, its classifier loaded (and cached: the detector itself is cheap to
    build, and a forked child gets a classifier of its own).

    :param model_name: The face-quality model (registered name, hub repo id or directory);
        default the settings' (``caformer_s36.head_crop``).
    :param settings: An `imgutils_facequal.ScoringSettings`; default the defaults.
    :param options: Any field of `imgutils_facequal.ScoringSettings` (``backend``,
        ``conf_threshold``, ``crop``, ``head_localisation``, ``head_infer_size``...), in place
        of the one in ``settings``.
    :raises TypeError: When an option is not a setting.

    Its ``settings`` build the same detector again, in this process or another.

    Example:

        >>> from imgutils_facequal import load_face_quality_detector
        >>> detector = load_face_quality_detector(crop='head', conf_threshold=0.3)  # doctest: +SKIP
        >>> len(detector.detect('frame.png'))  # doctest: +SKIP
        3
        >>> fast = load_face_quality_detector(head_localisation='heads', head_infer_size=320)  # doctest: +SKIP
    """
    if model_name is not None:
        options['model_name'] = model_name
    settings = ScoringSettings.merged(settings, **options)
    return FaceQualityDetector(load_face_quality_model(**settings.classifier_options), settings)


_DEFAULTS = ScoringSettings()
