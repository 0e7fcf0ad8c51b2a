"""The registry of known face-quality models, and how a ``model_name`` is resolved.

A ``model_name`` is one of:

* a registered short name (see `list_face_quality_models`), such as
  ``caformer_s36.head_crop``;
* a path to a local directory laid out like a published repository
  (``model.onnx``, ``preprocessor_config.json``, ...);
* a Hugging Face hub repository id, ``org/name``.
"""
import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from .errors import UnknownModelError

__all__ = [
    'FaceQualityModelInfo',
    'ModelSource',
    'DEFAULT_MODEL',
    'list_face_quality_models',
    'get_face_quality_model_info',
    'resolve_model',
]


@dataclass(frozen=True)
class FaceQualityModelInfo:
    """What the project knows about a published face-quality model.

    :param name: Short name used as ``model_name``.
    :param repo_id: Hugging Face hub repository holding the model.
    :param framing_sensitive: ``True`` when the model reads how much of the frame the head
        fills instead of the face itself, so it is only valid on whole frames.
    :param default_crop: The crop mode that matches how the model was trained.
    :param description: One line for listings.
    """
    name: str
    repo_id: str
    framing_sensitive: bool
    default_crop: str
    description: str


_KNOWN_MODELS: Dict[str, FaceQualityModelInfo] = {}


def _register(info: FaceQualityModelInfo) -> None:
    _KNOWN_MODELS[info.name] = info


_register(FaceQualityModelInfo(
    name='caformer_s36.head_crop',
    repo_id='deepghs-cv/cls-bangumibase-face-quality.caformer_s36.head_crop',
    framing_sensitive=False,
    default_crop='head',
    description='Production model: trained on head-aware random crops, '
                'macro-F1 about 0.93 in every crop setting of the card.',
))
_register(FaceQualityModelInfo(
    name='caformer_s36',
    repo_id='deepghs-cv/cls-bangumibase-face-quality.caformer_s36',
    framing_sensitive=True,
    default_crop='full',
    description='Reference baseline: reads framing, valid on whole frames only; '
                'collapses to chance (macro-F1 0.249) on head-only crops.',
))

DEFAULT_MODEL = 'caformer_s36.head_crop'

_REPO_ID_PATTERN = re.compile(r'^[A-Za-z0-9][\w.\-]*/[\w.\-]+$')


def list_face_quality_models() -> List[str]:
    """The registered model names, the default first.

    Example:

        >>> from imgutils_facequal import list_face_quality_models
        >>> list_face_quality_models()
        ['caformer_s36.head_crop', 'caformer_s36']
    """
    return list(_KNOWN_MODELS)


def get_face_quality_model_info(name: str) -> FaceQualityModelInfo:
    """The registry entry of a known model.

    :raises UnknownModelError: When ``name`` is not registered; the message lists the known names.

    Example:

        >>> from imgutils_facequal import get_face_quality_model_info
        >>> info = get_face_quality_model_info('caformer_s36')
        >>> info.repo_id, info.framing_sensitive
        ('deepghs-cv/cls-bangumibase-face-quality.caformer_s36', True)
    """
    try:
        return _KNOWN_MODELS[name]
    except KeyError:
        raise UnknownModelError(
            f'Unknown face-quality model {name!r}. Known models: {", ".join(_KNOWN_MODELS)}.'
        ) from None


@dataclass(frozen=True)
class ModelSource:
    """Where a model's files come from: a hub repository or a local directory.

    :param model_name: The name the caller asked for, used in messages.
    :param repo_id: Hub repository id, ``None`` for a local directory.
    :param revision: Hub revision (branch, tag or commit), ``None`` for the default branch.
    :param local_dir: Absolute path of a local directory, ``None`` for a hub repository.
    :param info: The registry entry when ``model_name`` is a registered name.

    Two sources are equal when they point at the same files, whatever name they were
    asked for by, so a model is loaded once however it is named.
    """
    model_name: str = field(compare=False)
    repo_id: Optional[str] = None
    revision: Optional[str] = None
    local_dir: Optional[str] = None
    info: Optional[FaceQualityModelInfo] = field(default=None, compare=False)

    @property
    def is_local(self) -> bool:
        return self.local_dir is not None

    @property
    def location(self) -> str:
        """The directory or ``repo@revision``, for messages."""
        if self.is_local:
            return self.local_dir
        return self.repo_id if self.revision is None else f'{self.repo_id}@{self.revision}'

    @property
    def framing_sensitive(self) -> bool:
        return self.info is not None and self.info.framing_sensitive


def resolve_model(model_name: str = DEFAULT_MODEL, revision: Optional[str] = None) -> ModelSource:
    """Turn a ``model_name`` into a `ModelSource`, without touching the network.

    Registered names win, then existing local directories, then hub repository ids.

    :raises UnknownModelError: When ``model_name`` is none of the three; the message lists
        the known names.

    Example:

        >>> from imgutils_facequal.models import resolve_model
        >>> resolve_model('caformer_s36.head_crop').repo_id
        'deepghs-cv/cls-bangumibase-face-quality.caformer_s36.head_crop'
        >>> resolve_model('someone/their-face-quality-model', revision='v2').location
        'someone/their-face-quality-model@v2'
    """
    if not isinstance(model_name, (str, os.PathLike)):
        raise UnknownModelError(
            f'model_name must be a string or a path, got {model_name!r}. '
            f'Known models: {", ".join(_KNOWN_MODELS)}.'
        )
    name = os.fspath(model_name)
    if name in _KNOWN_MODELS:
        info = _KNOWN_MODELS[name]
        return ModelSource(model_name=name, repo_id=info.repo_id, revision=revision, info=info)
    if os.path.isdir(name):
        return ModelSource(model_name=name, local_dir=os.path.abspath(name))
    if _REPO_ID_PATTERN.match(name) and not os.path.exists(name):
        info = next((item for item in _KNOWN_MODELS.values() if item.repo_id == name), None)
        return ModelSource(model_name=name, repo_id=name, revision=revision, info=info)
    raise UnknownModelError(
        f'Unknown face-quality model {name!r}: it is not a known model name, not an existing '
        f'local directory and not a Hugging Face repository id (org/name). '
        f'Known models: {", ".join(_KNOWN_MODELS)}.'
    )
