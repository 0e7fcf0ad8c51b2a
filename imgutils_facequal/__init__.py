"""imgutils-facequal: how good is an anime character's face? ``poor``, ``ok``, ``good`` or ``excellent``.

Importing the package is cheap: numpy, onnxruntime, imgutils and the hub client are
imported on first use, and torch never on the ONNX path.

Example::

    >>> from imgutils_facequal import classify_face_quality
    >>> classify_face_quality('face.png')  # doctest: +SKIP
    ('good', 0.8875)
"""
from .backends import BACKENDS, CPU_BATCH_SIZE, GPU_BATCH_SIZE, default_batch_size, load_face_quality_model
from .classify import (
    classify_face_quality,
    classify_face_quality_batch,
    classify_face_quality_score,
    classify_face_quality_score_batch,
    classify_face_quality_value,
)
from .detect import (
    CROP_MODES,
    DEFAULT_MARGIN,
    FaceQualityResult,
    FaceTags,
    NoFaceFoundError,
    detect_face_quality,
    tag_faces,
    visualize_face_quality,
)
from .errors import (
    BackendNotAvailableError,
    FaceQualityError,
    ImageLoadError,
    MissingModelFileError,
    ModelNotAvailableError,
    UnknownModelError,
)
from .evaluate import (
    DEFAULT_SETTINGS,
    CropRobustnessReport,
    CropSetting,
    evaluate_crop_robustness,
    read_hf_dataset,
    read_labelled_folder,
)
from .export import ExportCheckError, export_onnx, exports_dir
from .hookspecs import hookimpl
from .models import (
    DEFAULT_MODEL,
    FaceQualityModelInfo,
    get_face_quality_model_info,
    list_face_quality_models,
    resolve_model,
)
from .plugins import PluginError, list_detectors, list_plugins, list_taggers, register_plugin, unregister_plugin
from .quality import QUALITY_ORDER, face_quality_value

__version__ = '0.1.0'

__all__ = [
    'BACKENDS',
    'BackendNotAvailableError',
    'CROP_MODES',
    'CropRobustnessReport',
    'CropSetting',
    'DEFAULT_SETTINGS',
    'CPU_BATCH_SIZE',
    'DEFAULT_MARGIN',
    'DEFAULT_MODEL',
    'ExportCheckError',
    'FaceQualityError',
    'GPU_BATCH_SIZE',
    'FaceQualityModelInfo',
    'FaceQualityResult',
    'FaceTags',
    'ImageLoadError',
    'MissingModelFileError',
    'ModelNotAvailableError',
    'NoFaceFoundError',
    'PluginError',
    'QUALITY_ORDER',
    'UnknownModelError',
    'classify_face_quality',
    'classify_face_quality_batch',
    'classify_face_quality_score',
    'classify_face_quality_score_batch',
    'classify_face_quality_value',
    'default_batch_size',
    'detect_face_quality',
    'evaluate_crop_robustness',
    'export_onnx',
    'exports_dir',
    'face_quality_value',
    'get_face_quality_model_info',
    'hookimpl',
    'list_detectors',
    'list_face_quality_models',
    'list_plugins',
    'list_taggers',
    'load_face_quality_model',
    'read_hf_dataset',
    'read_labelled_folder',
    'register_plugin',
    'resolve_model',
    'tag_faces',
    'unregister_plugin',
    'visualize_face_quality',
    '__version__',
]
