"""imgutils-facequal: how good is an anime character's face? ``poor``, ``ok``, ``good`` or ``excellent``.

Importing the package is cheap: numpy, onnxruntime, imgutils and the hub client are
imported on first use, and torch never on the ONNX path.

Example::

    >>> from imgutils_facequal import classify_face_quality
    >>> classify_face_quality('face.png')  # doctest: +SKIP
    ('good', 0.8875)
"""
from .classify import (
    DEFAULT_BATCH_SIZE,
    classify_face_quality,
    classify_face_quality_batch,
    classify_face_quality_score,
    classify_face_quality_score_batch,
    load_face_quality_model,
)
from .errors import FaceQualityError, ImageLoadError, ModelNotAvailableError, UnknownModelError
from .models import (
    DEFAULT_MODEL,
    FaceQualityModelInfo,
    get_face_quality_model_info,
    list_face_quality_models,
    resolve_model,
)

__version__ = '0.1.0'

__all__ = [
    'DEFAULT_BATCH_SIZE',
    'DEFAULT_MODEL',
    'FaceQualityError',
    'FaceQualityModelInfo',
    'ImageLoadError',
    'ModelNotAvailableError',
    'UnknownModelError',
    'classify_face_quality',
    'classify_face_quality_batch',
    'classify_face_quality_score',
    'classify_face_quality_score_batch',
    'get_face_quality_model_info',
    'list_face_quality_models',
    'load_face_quality_model',
    'resolve_model',
    '__version__',
]
