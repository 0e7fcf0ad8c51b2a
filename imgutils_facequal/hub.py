"""Fetching a model's files from the Hugging Face hub or a local directory.

Hub files go through `huggingface_hub.hf_hub_download`, so its cache,
``HF_TOKEN``, ``HF_HUB_OFFLINE``, ``HF_ENDPOINT`` and ``HF_HUB_CACHE`` behave exactly as in
every other Hugging Face tool. Failures become one `ModelNotAvailableError` that
names the model, says why, and says how to fix it.

A hub that does not answer (no network, a firewall, an ``HF_ENDPOINT`` where nothing
listens) is found once a process (`hub_not_answering`), said once, and from then on every
model file, the detectors' included, comes from the local cache, as with ``HF_HUB_OFFLINE=1``:
no file waits on the network, and one that is not cached fails at once, without
huggingface_hub's retries.
"""
import json
import logging
import os
from typing import Any, Optional

from .caching import cached
from .errors import MissingModelFileError, ModelNotAvailableError
from .models import ModelSource

__all__ = ['fetch_model_file', 'read_json_file', 'resolved_commit', 'hub_unreachable', 'cache_says_missing',
           'hub_not_answering', 'hub_download', 'why_not_from_hub', 'HOW_TO_GET_MODELS']

logger = logging.getLogger('imgutils_facequal')

#: What to do when a model is neither cached nor to be had from the hub.
HOW_TO_GET_MODELS = (
    'run `imgutils-facequal download{model}` once where the hub can be reached (it fetches the classifier and the '
    'detectors into the Hugging Face cache; HF_ENDPOINT may name a mirror, and HF_HUB_OFFLINE=1 then keeps later '
    'runs off the network)'
)
_HOW_TO_FIX = ('To fix it: ' + HOW_TO_GET_MODELS + ', or point model_name at a local directory in the published '
               'layout, or check the name.')


def hub_unreachable(err: BaseException) -> bool:
    """Whether ``err`` says the hub could not be reached (a refused or timed-out connection, from the HTTP
    client huggingface_hub uses: requests, httpx, or httpx2 from huggingface_hub 2 on)."""
    root = type(err).__module__.split('.')[0]
    return root.startswith(('httpx', 'httpcore')) or root in ('requests', 'urllib3') or \
        isinstance(err, (ConnectionError, TimeoutError))


def _is_offline() -> bool:
    from huggingface_hub import constants
    return bool(constants.HF_HUB_OFFLINE)


def _endpoint() -> str:
    from huggingface_hub import constants
    return constants.ENDPOINT


@cached(per_process=True)
def hub_not_answering() -> bool:
    """Whether the hub at ``HF_ENDPOINT`` gave no answer at all (a refused, unresolved or timed-out connection)
    while ``HF_HUB_OFFLINE`` is unset; asked once a process, ``HF_HUB_ETAG_TIMEOUT`` seconds at most, and said
    once on the package's logger. Any answer, an HTTP error included, is an answer."""
    if _is_offline():
        return False
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session
    try:
        get_session().head(_endpoint(), timeout=constants.HF_HUB_ETAG_TIMEOUT)
    except Exception as err:  # noqa: BLE001 - only a connection that failed counts, told apart below
        if not hub_unreachable(err):
            return False
        logger.warning(f'the Hugging Face hub at {_endpoint()} (HF_ENDPOINT) could not be reached '
                       f'({type(err).__name__}); models come from the local cache. Set HF_HUB_OFFLINE=1 to use '
                       f'the cache without asking the hub.')
        return True
    return False


def why_not_from_hub() -> str:
    """Why a file that is not cached cannot be fetched now: offline mode, or a hub that does not answer."""
    if _is_offline():
        return 'HF_HUB_OFFLINE=1 is set, so the hub is not asked'
    return f'the hub at {_endpoint()} (HF_ENDPOINT) could not be reached'


def hub_download(repo_id: str, filename: str, revision: Optional[str] = None, ask_hub: bool = False) -> str:
    """``hf_hub_download``, from the local cache alone when the hub does not answer (`hub_not_answering`).

    :param ask_hub: Ask the hub even then (a download the user asked for).
    """
    from huggingface_hub import hf_hub_download
    return hf_hub_download(repo_id, filename, revision=revision,
                           local_files_only=not ask_hub and hub_not_answering())


def cache_says_missing(cached: Any) -> bool:
    """Whether an answer of `huggingface_hub.try_to_load_from_cache` says the repo lacks the file.

    It answers a path (cached), ``None`` (not known) or a marker object (an earlier online
    lookup found no such file); the marker is told apart without importing its private name.

    >>> cache_says_missing('/cache/model.onnx'), cache_says_missing(None), cache_says_missing(object())
    (False, False, True)
    """
    return cached is not None and not isinstance(cached, str)


def _known_missing(source: ModelSource, filename: str) -> bool:
    """Whether the cache recorded, on an earlier online lookup, that the repo lacks the file."""
    from huggingface_hub import try_to_load_from_cache
    try:
        return cache_says_missing(try_to_load_from_cache(source.repo_id, filename, revision=source.revision))
    except Exception:
        return False


def fetch_model_file(source: ModelSource, filename: str, required: bool = True,
                     missing_hint: str = '', ask_hub: bool = False) -> Optional[str]:
    """The local path of ``filename`` in the model's repository or directory.

    :param source: Where the model lives (see `imgutils_facequal.models.resolve_model`).
    :param filename: Path of the file inside the repository.
    :param required: When ``False``, a file that cannot be had (absent from the repository,
        or offline and not cached) gives ``None`` instead of an error.
    :param missing_hint: What to do when the repository or directory does not have the file,
        appended to that error.
    :param ask_hub: Ask the hub even when it did not answer before (see `hub_download`).
    :raises ModelNotAvailableError: When the file cannot be had.
    """
    if source.is_local:
        path = os.path.join(source.local_dir, filename)
        if os.path.isfile(path):
            return path
        if not required:
            return None
        raise MissingModelFileError(
            f'Model {source.model_name!r}: the local directory {source.local_dir!r} has no {filename!r}. '
            + (missing_hint or 'A model directory needs the published layout (model.onnx, '
               'preprocessor_config.json, config.json or meta.json).')
        )

    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f'model {source.model_name!r} (hub repo {source.location!r})'
    fix = _HOW_TO_FIX.format(model=' ' + source.model_name)
    try:
        return hub_download(source.repo_id, filename, revision=source.revision, ask_hub=ask_hub)
    except GatedRepoError as err:
        raise ModelNotAvailableError(
            f'Cannot get {filename!r} of {where}: the repository is gated and this account has '
            f'no access. Accept its terms on the hub and set HF_TOKEN.'
        ) from err
    except RepositoryNotFoundError as err:
        raise ModelNotAvailableError(
            f'Cannot get {filename!r} of {where}: the repository does not exist or is private '
            f'(set HF_TOKEN for a private one). Check the name; known names are listed by '
            f'list_face_quality_models().'
        ) from err
    except RevisionNotFoundError as err:
        raise ModelNotAvailableError(
            f'Cannot get {filename!r} of {where}: revision {source.revision!r} does not exist.'
        ) from err
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as err:
        if not required:
            return None
        if _known_missing(source, filename):
            raise MissingModelFileError(
                f'Cannot get {filename!r} of {where}: the repository has no such file. {missing_hint}'
            ) from err
        raise ModelNotAvailableError(
            f'Cannot get {filename!r} of {where}: it is not in the local Hugging Face cache and '
            f'{why_not_from_hub()}. {fix}'
        ) from err
    except EntryNotFoundError as err:
        if not required:
            return None
        raise MissingModelFileError(
            f'Cannot get {filename!r} of {where}: the repository has no such file. {missing_hint}'
        ) from err
    except (HfHubHTTPError, OSError) as err:
        raise ModelNotAvailableError(f'Cannot get {filename!r} of {where}: {err}. {fix}') from err
    except Exception as err:
        if not hub_unreachable(err):
            raise
        if not required:
            return None
        raise ModelNotAvailableError(f'Cannot get {filename!r} of {where}: it is not in the local Hugging Face '
                                     f'cache and {why_not_from_hub()}. {fix}') from None


def read_json_file(source: ModelSource, filename: str, required: bool = True) -> Optional[Any]:
    """Fetch a JSON file of the model and parse it; ``None`` when optional and absent."""
    path = fetch_model_file(source, filename, required=required)
    if path is None:
        return None
    try:
        with open(path, 'r', encoding='utf-8-sig') as f:  # a BOM, as some editors write it, is no error
            return json.load(f)
    except (OSError, ValueError) as err:
        raise ModelNotAvailableError(
            f'Model {source.model_name!r} ({source.location}): {filename!r} is not valid JSON ({err}). '
            f'Delete it from the cache and download it again.'
        ) from err


def resolved_commit(source: ModelSource) -> Optional[str]:
    """The commit of the model's files in the Hugging Face cache (``None`` for a local directory, or
    when nothing of it is cached): what ``revision`` resolved to when the files were fetched."""
    if source.is_local:
        return None
    from huggingface_hub import try_to_load_from_cache
    path = try_to_load_from_cache(source.repo_id, 'preprocessor_config.json', revision=source.revision)
    if not isinstance(path, str):
        return None
    parts = os.path.normpath(path).split(os.sep)
    return parts[parts.index('snapshots') + 1] if 'snapshots' in parts else None
