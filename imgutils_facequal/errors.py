"""Exceptions raised by imgutils-facequal.

Every error says what was asked, what went wrong and what to do next, so that the
message alone is enough to fix the problem.
"""

__all__ = [
    'FaceQualityError',
    'UnknownModelError',
    'ModelNotAvailableError',
    'MissingModelFileError',
    'BackendNotAvailableError',
    'ImageLoadError',
]


class FaceQualityError(Exception):
    """Base class of every error raised by imgutils-facequal."""


class UnknownModelError(FaceQualityError, ValueError):
    """``model_name`` is neither a known model, a hub repository id nor a local directory."""


class ModelNotAvailableError(FaceQualityError, OSError):
    """A model's files cannot be had: offline and not cached, unknown repo, missing file."""


class ImageLoadError(FaceQualityError, ValueError):
    """An input could not be read as an image."""


class MissingModelFileError(ModelNotAvailableError):
    """The repository or directory does not have a file the backend needs (e.g. ``model.onnx``)."""


class BackendNotAvailableError(FaceQualityError, ImportError):
    """A backend's packages are not installed; the message names the extra to install."""
