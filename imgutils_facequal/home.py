"""The package's own folder on disk, ``$IMGUTILS_FACEQUAL_HOME``, and where exports live in it.

It holds the ONNX exports (``exports/``, see `imgutils_facequal.export_onnx`) and the
checked rewrites of published graphs (``rewritten/``). Models themselves stay in the
Hugging Face cache.
"""
import os
from typing import Optional

from .errors import OutputError
from .models import ModelSource

__all__ = ['HOME_ENV', 'facequal_home', 'exports_dir', 'export_dir_for', 'exported_source']

HOME_ENV = 'IMGUTILS_FACEQUAL_HOME'


def facequal_home() -> str:
    """``$IMGUTILS_FACEQUAL_HOME``, default ``~/.cache/imgutils_facequal``.

    :raises OutputError: When it, or the first of its parents that exists, is not a folder (the variable
        names a file, say); the message names the variable and what to do.
    """
    home = os.path.abspath(os.path.expanduser(
        os.environ.get(HOME_ENV) or os.path.join('~', '.cache', 'imgutils_facequal')))
    existing = home
    while not os.path.exists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        where = f'{HOME_ENV}={os.environ[HOME_ENV]!r}' if os.environ.get(HOME_ENV) else f'the default {home!r}'
        raise OutputError(f'The folder for exports and rewritten graphs, {where}, cannot be made: {existing!r} is '
                          f'a file, not a folder. Set {HOME_ENV} to a folder (it is made if missing), or move the '
                          f'file away.')
    return home


def exports_dir() -> str:
    """Where ``export_onnx`` writes by default: ``{facequal_home()}/exports``."""
    return os.path.join(facequal_home(), 'exports')


def export_dir_for(source: ModelSource) -> Optional[str]:
    """The default export directory of a hub model (``None`` for a local directory).

    >>> import os
    >>> from imgutils_facequal.models import resolve_model
    >>> os.path.basename(export_dir_for(resolve_model('caformer_s36')))
    'deepghs-cv--cls-bangumibase-face-quality.caformer_s36'
    """
    if source.is_local:
        return None
    name = source.repo_id.replace('/', '--')
    if source.revision is not None:
        name += '@' + source.revision.replace('/', '--')
    return os.path.join(exports_dir(), name)


def exported_source(source: ModelSource) -> Optional[ModelSource]:
    """The local export of a hub model, when one was made; else ``None``."""
    directory = export_dir_for(source)
    if directory is None or not os.path.isfile(os.path.join(directory, 'model.onnx')):
        return None
    return ModelSource(model_name=source.model_name, local_dir=directory, info=source.info)
