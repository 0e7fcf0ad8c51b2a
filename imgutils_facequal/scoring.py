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

Head boxes come from one of two `HEAD_LOCALISATIONS`: ``'paired'`` (the default) runs the
face detector, then the head detector, and pairs each face with its head; ``'heads'`` runs
the head detector alone and derives each face box from its head box, one detector pass per
image instead of two. ``head_detector_options`` (``level``, ``infer_size``...) make the head
detector itself cheaper. Each changes the boxes: see the performance page for how much.
"""
import warnings
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

from .backends import DEFAULT_BACKEND, FaceQualityClassifier, load_face_quality_model, top_class
from .geometry import FACE_TO_HEAD_EXPANSION, crop_box, face_to_head_box, normalize_box, pair_faces_with_heads
from .images import load_rgb_image
from .models import DEFAULT_MODEL, ModelSource
from .plugins import detector_options, get_detector
from .quality import face_quality_value

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

CROP_MODES = ('head', 'face', 'full')

#: How head boxes are found: ``paired`` (face detector, then head detector, faces paired with
#: heads; the default) or ``heads`` (the head detector alone, face boxes derived from heads).
HEAD_LOCALISATIONS = ('paired', 'heads')

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


class FaceLocator:
    """The rules that find the faces of an image and the crop each one is scored on; no model.

    :param detector: A registered detector (``face`` or ``head`` built in; see
        `imgutils_facequal.list_detectors`).
    :param crop: ``head``, ``face`` or ``full``.
    :param margin: Margin per side as a multiple of the box size (``head`` and ``face`` crops).
    :param head_detector: Detector that finds head boxes for ``crop='head'``; ``None`` estimates
        them from the face boxes (`imgutils_facequal.geometry.face_to_head_box`).
    :param detector_options: Keyword options for ``detector`` (``conf_threshold``,
        ``iou_threshold``, ``level``, ``version``, ``model_name``, ``infer_size``); ``None``
        values are dropped.
    :param head_localisation: ``'paired'`` (default): ``detector`` finds the faces, then
        ``head_detector`` the heads, and each face is paired with its head. ``'heads'``:
        ``head_detector`` alone finds the heads and each face box is derived from its head
        box (the inverse of `imgutils_facequal.geometry.face_to_head_box`); ``detector`` does
        not run. One detector pass instead of two; the face boxes are estimates.
    :param head_detector_options: Keyword options for ``head_detector``, such as ``level``
        (``'n'``: the smaller, cheaper graph) or ``infer_size`` (``320``: the graph at a
        quarter of the pixels). Default none: the head detector as imgutils runs it.

    Example:

        >>> from imgutils_facequal import FaceLocator
        >>> locator = FaceLocator(head_localisation='heads', head_detector_options={'infer_size': 320})
        >>> [face.head_bbox for face in locator.locate(image)]  # doctest: +SKIP
        [(96.0, 40.0, 288.0, 232.0)]
    """

    def __init__(self, detector: str = 'face', crop: str = 'head', margin: float = DEFAULT_MARGIN,
                 head_detector: Optional[str] = 'head', detector_options: Optional[Dict[str, Any]] = None,
                 head_localisation: str = 'paired', head_detector_options: Optional[Dict[str, Any]] = None):
        if crop not in CROP_MODES:
            raise ValueError(f'crop must be one of {", ".join(CROP_MODES)}; got {crop!r}.')
        if head_localisation not in HEAD_LOCALISATIONS:
            raise ValueError(f'head_localisation must be one of {", ".join(HEAD_LOCALISATIONS)}; '
                             f'got {head_localisation!r}.')
        if head_localisation == 'heads' and head_detector is None:
            raise ValueError("head_localisation='heads' finds faces through their heads: it needs a head_detector "
                             "(the built-in one is 'head'); use head_localisation='paired' with head_detector=None "
                             "to run the face detector alone.")
        if head_detector is not None:
            get_detector(head_detector)
        if not isinstance(margin, (int, float)) or margin < 0:
            raise ValueError(f'margin is a multiple of the box size per side, 0 or more; got {margin!r}.')
        get_detector(detector)  # an unknown name fails here, before any image
        self.detector = detector
        self.crop = crop
        self.margin = margin
        self.head_detector = head_detector
        self.detector_options = dict(detector_options or {})
        self.head_localisation = head_localisation
        self.head_detector_options = {key: value for key, value in (head_detector_options or {}).items() if value is not None}

    @property
    def settings(self) -> Dict[str, Any]:
        """The rules as keyword arguments of `load_face_quality_detector`."""
        options = {('detector_model_name' if key == 'model_name' else key): value
                   for key, value in self.detector_options.items()}
        head_options = {f'head_{key}': value for key, value in self.head_detector_options.items()}
        return {'detector': self.detector, 'crop': self.crop, 'margin': self.margin,
                'head_detector': self.head_detector, **options, 'head_localisation': self.head_localisation,
                **head_options}

    def _heads(self, image) -> List[Tuple[Tuple[int, ...], str, float]]:
        return get_detector(self.head_detector)(image, **self.head_detector_options)

    def locate(self, image) -> List[FaceLocation]:
        """Detect the faces of a decoded image and work out each one's crop.

        With ``crop='head'``, each face is paired with the smallest head-detector box that
        holds it, else its head box is estimated from the face box. With ``detector='head'``
        the detections are head boxes already. With ``head_localisation='heads'`` the head
        detector alone runs and each face box is derived from its head.
        """
        size = image.size
        heads: List[Optional[Tuple[float, ...]]]
        if self.head_localisation == 'heads':
            found = self._heads(image)
            detections = [(_face_box_from_head(bbox), 'face', score) for bbox, _, score in found]
            heads = [tuple(map(float, bbox)) if self.crop == 'head' else None for bbox, _, _ in found]
            boxes = [bbox for bbox, _, _ in detections]
        else:
            detections = get_detector(self.detector)(image, **detector_options(**self.detector_options))
            boxes = [tuple(bbox) for bbox, _, _ in detections]
            heads = [None] * len(boxes)
        if self.crop == 'head' and boxes and self.head_localisation == 'paired':
            if self.detector == 'head':
                heads = [tuple(map(float, box)) for box in boxes]
            else:
                head_boxes = []
                if self.head_detector is not None:
                    head_boxes = [tuple(bbox) for bbox, _, _ in self._heads(image)]
                pairs = pair_faces_with_heads(boxes, head_boxes)
                heads = [tuple(map(float, head_boxes[index])) if index is not None else face_to_head_box(box)
                         for box, index in zip(boxes, pairs)]

        locations = []
        for (bbox, label, score), head in zip(detections, heads):
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

        With ``crop='full'`` every face sees the same frame, so it is scored once.
        """
        if self.crop == 'full':
            return ([image] if locations else []), [0] * len(locations)
        return [image.crop(location.crop_bbox) for location in locations], list(range(len(locations)))


class FaceQualityDetector:
    """A loaded classifier and the `FaceLocator` rules that find and crop the faces it scores.

    :param classifier: A loaded classifier (`imgutils_facequal.load_face_quality_model`).
    :param crop: ``head``, ``face`` or ``full``; ``None`` picks the one the model was trained
        for (``head`` for ``caformer_s36.head_crop``, ``full`` for ``caformer_s36``).

    The other arguments are those of `FaceLocator` (``head_localisation='heads'`` with
    ``head_detector_options={'infer_size': 320}`` is the fastest way to head crops: see the
    performance page for what it changes). It is cheap to build, safe to
    share between threads, and pickles as its settings (the classifier is loaded again,
    once, in the process that unpickles it).

    Example:

        >>> from imgutils_facequal import FaceQualityDetector, load_face_quality_model
        >>> detector = FaceQualityDetector(load_face_quality_model(), crop='head', margin=0.5)  # doctest: +SKIP
        >>> [face.label for face in detector.detect('frame.png')]  # doctest: +SKIP
        ['good', 'excellent', 'poor']
    """

    def __init__(self, classifier: FaceQualityClassifier, detector: str = 'face', crop: Optional[str] = None,
                 margin: float = DEFAULT_MARGIN, head_detector: Optional[str] = 'head',
                 detector_options: Optional[Dict[str, Any]] = None, head_localisation: str = 'paired',
                 head_detector_options: Optional[Dict[str, Any]] = None):
        self.classifier = classifier
        self.locator = FaceLocator(detector, crop or default_crop_for(classifier.source), margin, head_detector,
                                   detector_options, head_localisation, head_detector_options)
        _warn_if_framing_sensitive(classifier.source, self.locator.crop)

    @property
    def settings(self) -> Dict[str, Any]:
        """Plain, picklable keyword arguments of `load_face_quality_detector` that build it again."""
        return {**self.classifier.settings, **self.locator.settings}

    def __reduce__(self):
        locator = self.locator
        return FaceQualityDetector, (self.classifier, locator.detector, locator.crop, locator.margin,
                                     locator.head_detector, locator.detector_options, locator.head_localisation,
                                     locator.head_detector_options)

    def __repr__(self) -> str:
        locator = self.locator
        return (f'<FaceQualityDetector {self.classifier!r} detector={locator.detector!r} crop={locator.crop!r} '
                f'margin={locator.margin!r} head_detector={locator.head_detector!r}'
                + (f' head_localisation={locator.head_localisation!r}' if locator.head_localisation != 'paired' else '')
                + (f' head_detector_options={locator.head_detector_options!r}' if locator.head_detector_options else '')
                + '>')

    def detect(self, image) -> List[FaceQualityResult]:
        """Every face of an image (anything imgutils' ``ImageTyping`` accepts), scored, in the detector's order."""
        decoded = load_rgb_image(image)
        locations = self.locator.locate(decoded)
        inputs, face_input = self.locator.classifier_inputs(decoded, locations)
        scores = self.classifier.scores_in_batches(inputs)
        return face_results(locations, [scores[index] for index in face_input])


def load_face_quality_detector(model_name: str = DEFAULT_MODEL, revision: Optional[str] = None,
                               backend: str = DEFAULT_BACKEND, device: Optional[str] = None, precision: str = 'fp32',
                               detector: str = 'face', crop: Optional[str] = None, margin: float = DEFAULT_MARGIN,
                               head_detector: Optional[str] = 'head', conf_threshold: Optional[float] = None,
                               iou_threshold: Optional[float] = None, level: Optional[str] = None,
                               version: Optional[str] = None, detector_model_name: Optional[str] = None,
                               head_localisation: str = 'paired', head_level: Optional[str] = None,
                               head_version: Optional[str] = None,
                               head_infer_size: Optional[int] = None) -> FaceQualityDetector:
    """A `FaceQualityDetector` from plain settings, its classifier loaded (and cached: the detector itself
    is cheap to build, and a forked child gets a classifier of its own).

    The classifier's options are those of `imgutils_facequal.load_face_quality_model`;
    ``conf_threshold``, ``iou_threshold``, ``level``, ``version`` and ``detector_model_name``
    go to the detector (``None`` keeps its defaults). ``head_localisation`` is that of
    `FaceLocator`; ``head_level``, ``head_version`` and ``head_infer_size`` go to the head
    detector as ``level``, ``version`` and ``infer_size``. Its ``settings`` give these arguments back, so the same
    detector can be built in another process.

    Example:

        >>> from imgutils_facequal import load_face_quality_detector
        >>> detector = load_face_quality_detector(crop='head', conf_threshold=0.3)  # doctest: +SKIP
        >>> len(detector.detect('frame.png'))  # doctest: +SKIP
        3
        >>> fast = load_face_quality_detector(head_localisation='heads', head_infer_size=320)  # doctest: +SKIP
    """
    classifier = load_face_quality_model(model_name, revision=revision, backend=backend, device=device,
                                         precision=precision)
    options = detector_options(conf_threshold=conf_threshold, iou_threshold=iou_threshold, level=level,
                               version=version, model_name=detector_model_name)
    head_options = detector_options(level=head_level, version=head_version, infer_size=head_infer_size)
    return FaceQualityDetector(classifier, detector=detector, crop=crop, margin=margin, head_detector=head_detector,
                               detector_options=options, head_localisation=head_localisation,
                               head_detector_options=head_options)
