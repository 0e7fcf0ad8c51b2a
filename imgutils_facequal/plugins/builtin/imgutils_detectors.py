"""imgutils' anime face and head detectors, as the ``face`` and ``head`` detectors.

Options as in imgutils: ``conf_threshold``, ``iou_threshold``, ``level`` (``'s'``, ``'n'``...),
``version`` and ``model_name``. Options left at ``None`` keep imgutils' defaults.
"""
from typing import Dict, Optional

from ..._imgutils import detect_module
from ...errors import ModelNotAvailableError
from .. import detector_options
from ..hookspecs import hookimpl

__all__ = ['FACE_REPO', 'HEAD_REPO', 'DEFAULT_DETECTOR_MODELS', 'face_detector_model', 'head_detector_model',
           'detect_faces', 'detect_heads']

FACE_REPO = 'deepghs/anime_face_detection'
HEAD_REPO = 'deepghs/anime_head_detection'


def face_detector_model(version: Optional[str] = None, level: Optional[str] = None) -> str:
    """The face detector's model name in its repository: ``face_detect_{version}_{level}`` (default ``v1.4``, ``s``)."""
    return f'face_detect_{version or "v1.4"}_{level or "s"}'


def head_detector_model(version: Optional[str] = None, level: Optional[str] = None) -> str:
    """The head detector's model name in its repository: ``head_detect_{version}_{level}`` (default ``v2.0``, ``s``)."""
    return f'head_detect_{version or "v2.0"}_{level or "s"}'


#: The models imgutils reads by default, per hub repository.
DEFAULT_DETECTOR_MODELS: Dict[str, str] = {FACE_REPO: face_detector_model(), HEAD_REPO: head_detector_model()}


def _run(kind: str, repo: str, model_name: str, function, image, options):
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, OfflineModeIsEnabled
    try:
        return function(image, model_name=model_name, **detector_options(**options))
    except (EntryNotFoundError, OfflineModeIsEnabled, HfHubHTTPError) as err:
        raise ModelNotAvailableError(
            f'The {kind} detector cannot get its model {model_name!r} from hub repo {repo!r}: '
            f'{type(err).__name__}: {err} To fix it: run once with network access so the model lands '
            f'in the Hugging Face cache, or check the detector level, version and model name.'
        ) from err


def detect_faces(image, level=None, version=None, model_name=None, **options):
    """imgutils' ``detect_faces`` on ``model_name`` (default `face_detector_model`)."""
    return _run('face', FACE_REPO, model_name or face_detector_model(version, level), detect_module().detect_faces,
                image, options)


def detect_heads(image, level=None, version=None, model_name=None, **options):
    """imgutils' ``detect_heads`` on ``model_name`` (default `head_detector_model`)."""
    return _run('head', HEAD_REPO, model_name or head_detector_model(version, level), detect_module().detect_heads,
                image, options)


@hookimpl
def register_detectors(register):
    register('face', detect_faces, f"imgutils' anime face detector ({FACE_REPO})")
    register('head', detect_heads, f"imgutils' anime head detector ({HEAD_REPO})")
