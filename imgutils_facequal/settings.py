"""Every scoring setting, once: `ScoringSettings`.

One frozen, picklable object holds what decides how faces are found and scored: the
classifier (model, revision, backend, device, precision), the detector and its options,
the crop and its margin, the head detector and its options, and how head boxes are found.
`imgutils_facequal.load_face_quality_detector`, `imgutils_facequal.detect_face_quality`,
`imgutils_facequal.score_images`, the Ray scorer and the command line all accept these
fields as keyword arguments under the same names (``--head-infer-size`` on the command
line is ``head_infer_size`` here), and the provenance of saved scores records them under
those names too.

Example:

    >>> from imgutils_facequal import ScoringSettings
    >>> fast = ScoringSettings(head_localisation='heads', head_level='n', head_infer_size=320, backend='auto')
    >>> fast.head_detector_options
    {'level': 'n', 'infer_size': 320}
    >>> ScoringSettings.merged(fast, margin=1.0).margin
    1.0
    >>> ScoringSettings.merged(preset='fast') == fast
    True
"""
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from .backends import BACKENDS, DEFAULT_BACKEND, PRECISIONS
from .models import DEFAULT_MODEL

__all__ = ['ScoringSettings', 'CROP_MODES', 'HEAD_LOCALISATIONS', 'PRESETS', 'DEFAULT_MARGIN', 'CLASSIFIER_FIELDS',
           'SETTING_NAMES', 'check_setting']

#: What the classifier sees: the head box with a margin, the detector's box with a margin, or the whole frame.
CROP_MODES = ('head', 'face', 'full')
#: How head boxes are found: ``estimated`` (the face detector; each head box estimated from its
#: face box; one detector pass, the default), ``paired`` (the face detector, then the head
#: detector, faces paired with heads) or ``heads`` (the head detector alone, face boxes derived
#: from heads).
HEAD_LOCALISATIONS = ('estimated', 'paired', 'heads')
#: Settings by name: ``fast`` is the fastest combination the benchmark supports (the head
#: detector alone, its small graph at 320 x 320): one cheap detector pass instead of a full
#: face detector pass, with face boxes derived from head boxes (see the performance page for
#: what that changes), and the classifier on the fastest backend installed for the same graph
#: (``auto``: OpenVINO on the CPU with the openvino extra, else onnxruntime).
PRESETS = {'fast': {'head_localisation': 'heads', 'head_level': 'n', 'head_infer_size': 320, 'backend': 'auto'}}
#: Margin per side, as a multiple of the box size: the mean of a uniform draw from [0, 1],
#: inside the range the head-crop model was trained and evaluated on (0 to 4 in the card).
DEFAULT_MARGIN = 0.5


def _setting(default, help: str, **extra):
    return field(default=default, metadata={'help': help, **extra})


@dataclass(frozen=True)
class ScoringSettings:
    """Every setting that decides how faces are found and scored; frozen and picklable.

    Build it with keyword arguments (unknown names raise ``TypeError`` naming the valid
    ones), or merge options into one with `merged`. Values are checked when it is built, so
    a bad one fails before any model loads.
    """
    model_name: str = _setting(DEFAULT_MODEL, 'Face-quality model: registered name, hub repo id (org/name) or local '
                                              'directory.')
    revision: Optional[str] = _setting(None, 'Hub revision of the model (branch, tag or commit).')
    backend: str = _setting(DEFAULT_BACKEND, 'Inference backend.', choices=BACKENDS)
    device: Optional[str] = _setting(None, 'cpu, cuda, cuda:1... (default: the backend picks).')
    precision: str = _setting('fp32', "bf16: the model's blocks in bfloat16 (opt-in; needs the transformers or "
                                      'openvino backend; faster on CPUs with AVX512-BF16 or AMX).', choices=PRECISIONS)
    detector: str = _setting('face', 'Registered detector (see the plugins command).')
    conf_threshold: Optional[float] = _setting(None, "Detector confidence threshold (default: the detector's).",
                                               range=(0.0, 1.0))
    iou_threshold: Optional[float] = _setting(None, 'Detector NMS IoU threshold.', range=(0.0, 1.0))
    detector_level: Optional[str] = _setting(None, "Detector model level, e.g. s or n (imgutils' level).")
    detector_version: Optional[str] = _setting(None, "Detector model version, e.g. v1.4 (imgutils' version).")
    detector_model_name: Optional[str] = _setting(None, "The detector's own model name (imgutils' model_name).")
    crop: Optional[str] = _setting(None, 'What the classifier sees; default: what the model was trained on (head for '
                                         'caformer_s36.head_crop, full for caformer_s36).', choices=CROP_MODES)
    margin: float = _setting(DEFAULT_MARGIN, 'Margin per side for head and face crops, times the box size.',
                             range=(0.0, None))
    head_detector: Optional[str] = _setting('head', 'Registered detector that finds head boxes for head crops.')
    head_level: Optional[str] = _setting(None, 'Head detector model level, e.g. n (faster, coarser).')
    head_version: Optional[str] = _setting(None, 'Head detector model version.')
    head_infer_size: Optional[int] = _setting(None, "Run the head detector at this square size, a multiple of 32 "
                                                    "(320: a quarter of the work of imgutils' 640; changes the "
                                                    "boxes).", range=(64, 4096), multiple_of=32)
    head_localisation: str = _setting('estimated', 'estimated: the face detector, each head box estimated from its '
                                                   'face box (one detector pass); paired: the face detector, then the '
                                                   'head detector (two passes, detected head boxes); heads: the head '
                                                   'detector alone, face boxes derived from heads.',
                                      choices=HEAD_LOCALISATIONS)

    def __post_init__(self):
        for name in SETTING_NAMES:
            check_setting(name, getattr(self, name))
        if self.head_localisation == 'heads' and self.head_detector is None:
            raise ValueError("head_localisation='heads' finds faces through their heads: it needs a head_detector "
                             "(the built-in one is 'head'); use head_localisation='estimated' to run the face "
                             "detector alone.")

    @classmethod
    def merged(cls, settings: Optional['ScoringSettings'] = None, preset: Optional[str] = None,
               **options: Any) -> 'ScoringSettings':
        """``settings`` (default: the defaults), then the `PRESETS` entry ``preset``, then ``options``.

        :raises TypeError: When an option is not a setting; the message lists the settings.
        :raises ValueError: When a value is out of its range, or ``preset`` is not a preset.
        """
        unknown = sorted(set(options) - set(SETTING_NAMES))
        if unknown:
            raise TypeError(f'{", ".join(map(repr, unknown))} {"is" if len(unknown) == 1 else "are"} not a scoring '
                            f'setting; the settings are: {", ".join(SETTING_NAMES)}.')
        if preset is not None and preset not in PRESETS:
            raise ValueError(f'preset must be one of {", ".join(PRESETS)}; got {preset!r}.')
        return dataclasses.replace(settings or cls(), **PRESETS.get(preset, {}), **options)

    def as_dict(self) -> Dict[str, Any]:
        """The settings as plain keyword arguments, by their names."""
        return {name: getattr(self, name) for name in SETTING_NAMES}

    @property
    def classifier_options(self) -> Dict[str, Any]:
        """The keyword arguments of `imgutils_facequal.load_face_quality_model`."""
        return {name: getattr(self, name) for name in CLASSIFIER_FIELDS}

    @property
    def detector_options(self) -> Dict[str, Any]:
        """The options the detector plugin is called with, in imgutils' names; unset ones left out."""
        return _set(conf_threshold=self.conf_threshold, iou_threshold=self.iou_threshold, level=self.detector_level,
                    version=self.detector_version, model_name=self.detector_model_name)

    @property
    def head_detector_options(self) -> Dict[str, Any]:
        """The options the head detector plugin is called with, in imgutils' names; unset ones left out."""
        return _set(level=self.head_level, version=self.head_version, infer_size=self.head_infer_size)


def check_setting(name: str, value: Any) -> Any:
    """``value`` if it is a valid value of setting ``name`` on its own (its choices, its finite range, its step).

    The command line checks each option with it as it is parsed, so both say the same.

    :raises ValueError: Naming the setting, the rule and the value.

    >>> check_setting('head_infer_size', 320)
    320
    >>> check_setting('conf_threshold', float('nan'))
    Traceback (most recent call last):
    ...
    ValueError: conf_threshold must be a number from 0 to 1; got nan.
    """
    if value is None:
        return value
    metadata = _FIELDS[name].metadata
    choices = metadata.get('choices')
    if choices is not None and value not in choices:
        raise ValueError(f'{name} must be one of {", ".join(choices)}; got {value!r}.')
    bounds, step = metadata.get('range'), metadata.get('multiple_of')
    if step is not None and (isinstance(value, bool) or not isinstance(value, int) or value % step
                             or not bounds[0] <= value <= bounds[1]):
        raise ValueError(f'{name} must be a whole multiple of {step} from {bounds[0]} to {bounds[1]} (320, 416, '
                         f'640...); got {value!r}.')
    if bounds is not None:
        low, high = bounds
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or \
                value < low or (high is not None and value > high):
            span = f'from {low:g} to {high:g}' if high is not None else f'{low:g} or more'
            raise ValueError(f'{name} must be a number {span}; got {value!r}.')
    return value


def _set(**options: Any) -> Dict[str, Any]:
    return {key: value for key, value in options.items() if value is not None}


_FIELDS = {item.name: item for item in dataclasses.fields(ScoringSettings)}
#: Every setting's name, in order.
SETTING_NAMES = tuple(_FIELDS)
#: The settings that choose and load the classifier.
CLASSIFIER_FIELDS = ('model_name', 'revision', 'backend', 'device', 'precision')
