"""imgutils-facequal: how good is an anime character's face? ``poor``, ``ok``, ``good`` or ``excellent``.

Importing the package is cheap: numpy, onnxruntime, imgutils and the hub client are
imported on first use, and torch never on the ONNX path.

Example:

    >>> from imgutils_facequal import classify_face_quality
    >>> classify_face_quality('face.png')  # doctest: +SKIP
    ('good', 0.8875)
"""
from .backends import (BACKENDS, CPU_BATCH_SIZE, GPU_BATCH_SIZE, PRECISIONS, FaceQualityClassifier,
                       load_face_quality_model)
from .classify import (
    classify_face_quality,
    classify_face_quality_batch,
    classify_face_quality_score,
    classify_face_quality_score_batch,
    classify_face_quality_value,
)
from .curate import (
    DEFAULT_DEDUP_DISTANCE,
    DEFAULT_SIDECARS,
    FilterSummary,
    FolderFilter,
    Thresholds,
    ThresholdTable,
    apply_decisions,
    duplicate_groups,
    face_size,
    read_decisions,
    scores_fingerprint,
    filter_images,
    find_sidecars,
    kept_faces,
    kept_images,
    output_stems,
    place_file,
    threshold_table,
)
from .curate.captions import TrainingFiles
from .demo import build_demo, launch_demo
from .detect import FaceTags, detect_face_quality, tag_faces, visualize_face_quality
from .errors import (
    BackendNotAvailableError,
    ExportCheckError,
    FaceQualityError,
    ImageLoadError,
    MissingModelFileError,
    ModelNotAvailableError,
    NoFaceFoundError,
    PluginError,
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
from .export import export_onnx
from .hf_datasets import face_quality_map
from .home import exports_dir
from .models import (
    DEFAULT_MODEL,
    FaceQualityModelInfo,
    get_face_quality_model_info,
    list_face_quality_models,
    resolve_model,
)
from .pipeline import ImageResult, InputImage, find_images, score_images, score_images_with
from .plugins import list_detectors, list_plugins, list_taggers, register_plugin, unregister_plugin
from .plugins.hookspecs import hookimpl
from .quality import QUALITY_ORDER, face_quality_value
from .report import write_report
from .scoring import FaceLocator, FaceQualityDetector, FaceQualityResult, load_face_quality_detector
from .settings import CROP_MODES, DEFAULT_MARGIN, HEAD_LOCALISATIONS, ScoringSettings
from .store import SavedScores, ScoresWriter, read_scores, scored_images
from .visualize import save_face_quality_visualization

from ._version import __version__

__all__ = [
    'BACKENDS',
    'BackendNotAvailableError',
    'CROP_MODES',
    'CPU_BATCH_SIZE',
    'CropRobustnessReport',
    'CropSetting',
    'DEFAULT_MARGIN',
    'DEFAULT_MODEL',
    'DEFAULT_SETTINGS',
    'DEFAULT_SIDECARS',
    'ExportCheckError',
    'FaceLocator',
    'FaceQualityClassifier',
    'FaceQualityDetector',
    'FaceQualityError',
    'FaceQualityModelInfo',
    'FaceQualityResult',
    'FaceTags',
    'FilterSummary',
    'FolderFilter',
    'Thresholds',
    'DEFAULT_DEDUP_DISTANCE',
    'apply_decisions',
    'duplicate_groups',
    'face_size',
    'read_decisions',
    'scores_fingerprint',
    'GPU_BATCH_SIZE',
    'HEAD_LOCALISATIONS',
    'ImageLoadError',
    'ImageResult',
    'InputImage',
    'MissingModelFileError',
    'ModelNotAvailableError',
    'NoFaceFoundError',
    'PluginError',
    'PRECISIONS',
    'QUALITY_ORDER',
    'SavedScores',
    'ScoresWriter',
    'ScoringSettings',
    'ThresholdTable',
    'TrainingFiles',
    'UnknownModelError',
    'build_demo',
    'classify_face_quality',
    'classify_face_quality_batch',
    'classify_face_quality_score',
    'classify_face_quality_score_batch',
    'classify_face_quality_value',
    'detect_face_quality',
    'evaluate_crop_robustness',
    'export_onnx',
    'exports_dir',
    'face_quality_map',
    'face_quality_value',
    'filter_images',
    'find_images',
    'find_sidecars',
    'get_face_quality_model_info',
    'hookimpl',
    'kept_faces',
    'kept_images',
    'launch_demo',
    'list_detectors',
    'list_face_quality_models',
    'list_plugins',
    'list_taggers',
    'load_face_quality_detector',
    'load_face_quality_model',
    'output_stems',
    'place_file',
    'read_hf_dataset',
    'read_labelled_folder',
    'read_scores',
    'save_face_quality_visualization',
    'register_plugin',
    'resolve_model',
    'score_images',
    'scored_images',
    'score_images_with',
    'tag_faces',
    'threshold_table',
    'unregister_plugin',
    'visualize_face_quality',
    'write_report',
    '__version__',
]
