"""imgutils' anime face and head detectors, as the ``face`` and ``head`` detectors.

Options as in imgutils: ``conf_threshold``, ``iou_threshold``, ``level`` (``'s'``, ``'n'``...),
``version`` and ``model_name``. Options left at ``None`` keep imgutils' defaults.
"""
from ..errors import ModelNotAvailableError
from ..hookspecs import hookimpl

FACE_REPO = 'deepghs/anime_face_detection'
HEAD_REPO = 'deepghs/anime_head_detection'


def _run(kind: str, repo: str, model_name: str, function, image, options):
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, OfflineModeIsEnabled
    try:
        return function(image, model_name=model_name, **options)
    except (EntryNotFoundError, OfflineModeIsEnabled, HfHubHTTPError) as err:
        raise ModelNotAvailableError(
            f'The {kind} detector cannot get its model {model_name!r} from hub repo {repo!r}: '
            f'{type(err).__name__}: {err} To fix it: run once with network access so the model lands '
            f'in the Hugging Face cache, or check the detector level, version and model name.'
        ) from err


def _without_none(options):
    return {key: value for key, value in options.items() if value is not None}


def detect_faces(image, level=None, version=None, model_name=None, **options):
    """imgutils' ``detect_faces``: ``face_detect_{version}_{level}`` (default ``v1.4``, ``s``)."""
    from .._imgutils import detect_module
    model_name = model_name or f'face_detect_{version or "v1.4"}_{level or "s"}'
    return _run('face', FACE_REPO, model_name, detect_module().detect_faces, image, _without_none(options))


def detect_heads(image, level=None, version=None, model_name=None, **options):
    """imgutils' ``detect_heads``: ``head_detect_{version}_{level}`` (default ``v2.0``, ``s``)."""
    from .._imgutils import detect_module
    model_name = model_name or f'head_detect_{version or "v2.0"}_{level or "s"}'
    return _run('head', HEAD_REPO, model_name, detect_module().detect_heads, image, _without_none(options))


@hookimpl
def register_detectors(register):
    register('face', detect_faces, f"imgutils' anime face detector ({FACE_REPO})")
    register('head', detect_heads, f"imgutils' anime head detector ({HEAD_REPO})")
