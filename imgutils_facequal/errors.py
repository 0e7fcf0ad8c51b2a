"""Exceptions raised by imgutils-facequal.

Every error says what was asked, what went wrong and what to do next, so that the
message alone is enough to fix the problem. Each derives from a builtin as well, so
``except ValueError`` or ``except OSError`` catches what it should.
"""

__all__ = [
    'install_hint',
    'FaceQualityError',
    'UnknownModelError',
    'ModelNotAvailableError',
    'MissingModelFileError',
    'BackendNotAvailableError',
    'ImageLoadError',
    'NoFaceFoundError',
    'PluginError',
    'ExportCheckError',
    'ModelOutputError',
    'DetectionError',
    'InputNotFoundError',
    'OutputError',
]


def install_hint(extra: str) -> str:
    """How to install an extra, from PyPI or from a clone of the source.

    >>> install_hint('torch')
    "pip install 'imgutils-facequal[torch]' (in a clone of the source: pip install '.[torch]')"
    """
    return f"pip install 'imgutils-facequal[{extra}]' (in a clone of the source: pip install '.[{extra}]')"


class FaceQualityError(Exception):
    """Base class of every error raised by imgutils-facequal."""


class UnknownModelError(FaceQualityError, ValueError):
    """``model_name`` is neither a known model, a hub repository id nor a local directory."""


class ModelNotAvailableError(FaceQualityError, OSError):
    """A model's files cannot be had: offline and not cached, unknown repo, missing file."""


class MissingModelFileError(ModelNotAvailableError):
    """The repository or directory does not have a file the backend needs (e.g. ``model.onnx``)."""


class BackendNotAvailableError(FaceQualityError, ImportError):
    """A backend's packages are not installed; the message names the extra to install."""


class ImageLoadError(FaceQualityError, ValueError):
    """An input could not be read as an image."""


class NoFaceFoundError(FaceQualityError, ValueError):
    """A crop around a face was asked for, but the detector found no face in the image."""


class PluginError(FaceQualityError, ValueError):
    """A detector or tagger is unknown, misbehaves, or two plugins register the same name."""


class ExportCheckError(FaceQualityError):
    """The exported ONNX model does not reproduce torch's output; nothing was written."""


class ModelOutputError(FaceQualityError, ValueError):
    """The classifier gave no probabilities for an image (NaN or infinite values)."""


class DetectionError(FaceQualityError, ValueError):
    """A detector failed on an image, or returned something that is not a list of detections."""


class InputNotFoundError(FaceQualityError, FileNotFoundError):
    """A path or glob given as input matches nothing."""


class OutputError(FaceQualityError, OSError):
    """An output cannot be written (a missing folder, a read-only file, a full disk)."""
