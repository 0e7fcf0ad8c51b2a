"""imgutils' anime face and head detectors, as the ``face`` and ``head`` detectors.

Options as in imgutils: ``conf_threshold``, ``iou_threshold``, ``level`` (``'s'``, ``'n'``...),
``version`` and ``model_name``. Options left at ``None`` keep imgutils' defaults.

One option imgutils has not: ``infer_size``, the square size the detector graph runs at
(a multiple of 32; imgutils always runs the graph's own ``imgsz``, 640). With it the same
``model.onnx`` runs in a session of our own (`yolo_sessions.YoloSession`), which reproduces
imgutils' pre- and post-processing; at 320 the graph computes a quarter of the work, and
its boxes are those of a coarser look at the image.

With ``IMGUTILS_FACEQUAL_THREADS`` set (a Ray actor, a Slurm task), the detectors run in
those sessions of our own too, at the graph's own size, with that many threads: imgutils
opens its sessions with a thread per core, which oversubscribes a machine shared by several
processes.

Each detector has a batch form too (`detect_faces_batch`, `detect_heads_batch`, registered as
its ``detect_batch``): the same options, several images per run of the graph in a session of
our own (`yolo_sessions.YoloSession.predict_batch`), each image's detections those of the
single-image form.
"""
import os
from typing import Dict, Optional

from ..._imgutils import detect_module
from ...errors import ModelNotAvailableError
from ...hub import HOW_TO_GET_MODELS, hub_not_answering, hub_unreachable, why_not_from_hub
from .. import detector_options
from ...sessions import THREADS_ENV
from ..hookspecs import hookimpl
from .yolo_sessions import yolo_session

__all__ = ['FACE_REPO', 'HEAD_REPO', 'DEFAULT_DETECTOR_MODELS', 'face_detector_model', 'head_detector_model',
           'DEFAULT_THRESHOLDS', 'detect_faces', 'detect_heads', 'detect_faces_batch', 'detect_heads_batch']

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


#: The confidence thresholds imgutils' ``detect_faces`` and ``detect_heads`` pass by default.
DEFAULT_THRESHOLDS = {FACE_REPO: 0.25, HEAD_REPO: 0.4}


def _run(kind: str, repo: str, model_name: str, function, image, options):
    options = detector_options(**options)
    infer_size = options.pop('infer_size', None)

    def call():
        # imgutils lists the repository's models on the hub first, and fails when the hub does not answer
        if infer_size is not None or os.environ.get(THREADS_ENV) or hub_not_answering():
            return _session(repo, model_name).predict(image, infer_size, **options)
        return function(image, model_name=model_name, **options)
    return _with_area(_from_hub(kind, repo, model_name, call))


def _run_batch(kind: str, repo: str, model_name: str, images, options):
    options = detector_options(**options)
    found = _from_hub(kind, repo, model_name, lambda: _session(repo, model_name).predict_batch(images, **options))
    return [_with_area(detections) for detections in found]


def _with_area(detections: list) -> list:
    """The detections whose box, in whole pixels, still has an area: on an image a pixel or two wide
    (1 x 1, 1 x 20000) the graph's boxes round to no width, and such an image has no face."""
    return [detection for detection in detections
            if detection[0][2] > detection[0][0] and detection[0][3] > detection[0][1]]


def _session(repo: str, model_name: str):
    return yolo_session(repo, model_name, DEFAULT_THRESHOLDS[repo])


def _from_hub(kind: str, repo: str, model_name: str, call):
    """``call()``, with a model the hub cannot give turned into an error that says what to do."""
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError, \
        OfflineModeIsEnabled
    try:
        return call()
    except Exception as err:
        unreachable = hub_unreachable(err)
        if not (unreachable or isinstance(err, (EntryNotFoundError, OfflineModeIsEnabled, HfHubHTTPError))):
            raise
        if unreachable or isinstance(err, (LocalEntryNotFoundError, OfflineModeIsEnabled)):
            reason = f'it is not in the local Hugging Face cache and {why_not_from_hub()}'
        else:
            reason = f'{type(err).__name__}: {err}'
        raise ModelNotAvailableError(
            f'The {kind} detector cannot get its model {model_name!r} from hub repo {repo!r}: {reason}. '
            f'To fix it: {HOW_TO_GET_MODELS.format(model="")}, or check the detector level, version and model name.'
        ) from None if unreachable else err


def detect_faces(image, level=None, version=None, model_name=None, **options):
    """imgutils' ``detect_faces`` on ``model_name`` (default `face_detector_model`).

    With ``infer_size`` the graph runs at that square size in a session of our own.
    """
    return _run('face', FACE_REPO, model_name or face_detector_model(version, level), detect_module().detect_faces,
                image, options)


def detect_heads(image, level=None, version=None, model_name=None, **options):
    """imgutils' ``detect_heads`` on ``model_name`` (default `head_detector_model`).

    With ``infer_size`` the graph runs at that square size in a session of our own.
    """
    return _run('head', HEAD_REPO, model_name or head_detector_model(version, level), detect_module().detect_heads,
                image, options)


def detect_faces_batch(images, level=None, version=None, model_name=None, **options):
    """`detect_faces` on each of several images (the same options), several images per run of the graph."""
    return _run_batch('face', FACE_REPO, model_name or face_detector_model(version, level), images, options)


def detect_heads_batch(images, level=None, version=None, model_name=None, **options):
    """`detect_heads` on each of several images (the same options), several images per run of the graph."""
    return _run_batch('head', HEAD_REPO, model_name or head_detector_model(version, level), images, options)


@hookimpl
def register_detectors(register):
    register('face', detect_faces, f"imgutils' anime face detector ({FACE_REPO})", detect_batch=detect_faces_batch)
    register('head', detect_heads, f"imgutils' anime head detector ({HEAD_REPO})", detect_batch=detect_heads_batch)
