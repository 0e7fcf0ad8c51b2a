"""Detect, then score: every face of an image, found by a registered detector and scored on its crop.

The image is decoded once, and all crops of an image go through the classifier in batched
forward passes. The crop rules are those of `imgutils_facequal.FaceQualityDetector`.
"""
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

from .errors import PluginError
from .images import load_rgb_image
from .plugins import get_tagger
from .quality import reaches
from .scoring import FaceLocator, FaceQualityResult, load_face_quality_detector
from .settings import ScoringSettings
from .visualize import visualize_face_quality

__all__ = ['FaceTags', 'detect_face_quality', 'tag_faces', 'visualize_face_quality', 'TAGGED_AT_ONCE']

#: Crops `tag_faces` hands each tagger per call; a frame with more faces is tagged in turns.
TAGGED_AT_ONCE = 64


class FaceTags(NamedTuple):
    """One face with the results of several taggers, by tagger name."""
    bbox: Tuple[int, int, int, int]
    detection_label: str
    detection_score: float
    head_bbox: Optional[Tuple[float, float, float, float]]
    crop_bbox: Tuple[int, int, int, int]
    tags: Dict[str, Any]


def detect_face_quality(image, model_name: Optional[str] = None, min_label: Optional[str] = None,
                        min_quality: Optional[float] = None, settings: Optional[ScoringSettings] = None, **options: Any) -> List[FaceQualityResult]:
    """Find every face in an image and score its quality.

    :param image: Anything imgutils' ``ImageTyping`` accepts; decoded once.
    :param model_name: The face-quality model (registered name, hub repo id or directory);
        default ``caformer_s36.head_crop``.
    :param min_label: Keep only faces whose class (the ``label``) is this one or better (e.g. ``'good'``).
    :param min_quality: Keep only faces whose ``quality`` value in [0, 1] is at least this.
    :param settings: An `imgutils_facequal.ScoringSettings`; default the defaults.
    :param options: Any field of `imgutils_facequal.ScoringSettings`, in place of the one in
        ``settings``: ``detector`` (``face`` or ``head`` built in), ``conf_threshold``,
        ``iou_threshold``, ``detector_level``, ``detector_version``, ``crop`` (``head``,
        ``face`` or ``full``; default what the model was trained for), ``margin``,
        ``head_detector``, ``head_localisation``, ``head_level``, ``head_infer_size``,
        ``revision``, ``backend``, ``device``, ``precision``...
    :return: One `FaceQualityResult` per face, in the detector's order.
    :raises TypeError: When an option is not a setting.

    Example:

        >>> from imgutils_facequal import detect_face_quality
        >>> for face in detect_face_quality('frame.png'):  # doctest: +SKIP
        ...     print(face.bbox, face.label, round(face.score, 3), round(face.quality, 3))
        (412, 95, 590, 280) good 0.912 0.687
    """
    faces = load_face_quality_detector(model_name, settings, **options).detect(image)
    return [face for face in faces if reaches(face.label, face.quality, list(face.scores), min_label, min_quality)]


def tag_faces(image, taggers: Sequence[str] = ('face_quality',),
              tagger_options: Optional[Dict[str, Dict[str, Any]]] = None,
              settings: Optional[ScoringSettings] = None, **options: Any) -> List[FaceTags]:
    """Run several registered taggers over the same face crops.

    :param taggers: Names of registered taggers (see `imgutils_facequal.list_taggers`).
    :param tagger_options: Per tagger, keyword options, e.g.
        ``{'face_quality': {'model_name': 'caformer_s36.head_crop'}}``.
    :param settings: The `imgutils_facequal.ScoringSettings` that find and crop the faces
        (its detector, crop and head fields); ``options`` replace its fields. ``crop``
        defaults to ``head``.
    :return: One `FaceTags` per face, its ``tags`` holding each tagger's result. Each tagger
        gets at most `TAGGED_AT_ONCE` crops a call.

    Example:

        >>> from imgutils_facequal import tag_faces
        >>> tag_faces('frame.png', taggers=['face_quality'])[0].tags['face_quality']  # doctest: +SKIP
        {'poor': 0.001, 'ok': 0.02, 'good': 0.91, 'excellent': 0.069}
    """
    resolved = [get_tagger(name) for name in taggers]
    tagger_options = tagger_options or {}
    locator = FaceLocator(settings, **options)
    decoded = load_rgb_image(image)
    locations = locator.locate(decoded)
    per_tagger = {tagger.name: [] for tagger in resolved}
    # TAGGED_AT_ONCE crops at a time, each tagger over the same ones: a frame of a crowd holds bounded memory
    for start in range(0, len(locations), TAGGED_AT_ONCE):
        crops = [decoded.crop(location.crop_bbox) for location in locations[start:start + TAGGED_AT_ONCE]]
        for tagger in resolved:
            outputs = list(tagger(crops, **tagger_options.get(tagger.name, {})))
            if len(outputs) != len(crops):
                raise PluginError(
                    f'Tagger {tagger.name!r} (plugin {tagger.plugin!r}) returned {len(outputs)} results '
                    f'for {len(crops)} crops; a tagger must return one result per crop.'
                )
            per_tagger[tagger.name].extend(outputs)
    return [FaceTags(*location, tags={name: outputs[index] for name, outputs in per_tagger.items()})
            for index, location in enumerate(locations)]

