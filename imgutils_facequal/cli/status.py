"""What is cached where, and fetching models ahead of offline use (the CLI's models and download)."""
from typing import Iterator, List, Optional

from ..errors import MissingModelFileError, ModelNotAvailableError
from ..graphs.cache import cached_graph
from ..graphs.onnx_rewrites import OPENVINO_REWRITES
from ..home import exported_source
from ..hub import cache_says_missing, fetch_model_file, hub_unreachable, why_not_from_hub
from ..models import DEFAULT_MODEL, get_face_quality_model_info, list_face_quality_models, resolve_model
from ..plugins.builtin.imgutils_detectors import DEFAULT_DETECTOR_MODELS

__all__ = ['model_status', 'download_model', 'download_detectors', 'DETECTOR_FILES']

#: The detector files imgutils reads by default, per hub repository.
DETECTOR_FILES = {repo: [f'{model}/{name}' for name in ('model.onnx', 'model_type.json', 'threshold.json')]
                  for repo, model in DEFAULT_DETECTOR_MODELS.items()}
_ONNX_FILES = ('model.onnx', 'preprocessor_config.json', 'config.json', 'meta.json')


def model_status() -> List[dict]:
    """For each registered model: its repo, its use, and where its ONNX model would come from."""
    from huggingface_hub import try_to_load_from_cache

    rows = []
    for name in list_face_quality_models():
        info = get_face_quality_model_info(name)
        source = resolve_model(name)
        exported = exported_source(source)
        if exported is not None:
            status = f'local ONNX export: {exported.local_dir}'
        else:
            cached = try_to_load_from_cache(info.repo_id, 'model.onnx')
            if cache_says_missing(cached):
                status = ('the repo has no model.onnx: run `imgutils-facequal export` (torch extra) or use '
                          '--backend transformers')
            elif cached:
                status = f'cached: {cached}'
                graph = cached_graph(cached)
                if graph is not None and graph.rewrites:
                    status += f'; runs its checked rewrite {graph.path}'
                openvino_graph = cached_graph(cached, OPENVINO_REWRITES)
                if openvino_graph is not None and openvino_graph.rewrites:
                    status += f"; backend='openvino' runs {openvino_graph.path}"
            else:
                status = 'not cached (run `imgutils-facequal download` once online)'
        rows.append({'name': name, 'default': name == DEFAULT_MODEL, 'repo_id': info.repo_id,
                     'framing_sensitive': info.framing_sensitive, 'default_crop': info.default_crop,
                     'description': info.description, 'status': status})
    return rows


def download_model(model_name: str, revision: Optional[str] = None) -> Iterator[str]:
    """Fetch the files the ONNX backend reads into the Hugging Face cache; yields a line per file."""
    source = resolve_model(model_name, revision=revision)
    if source.is_local:
        yield f'{model_name}: a local directory, nothing to download'
        return
    for filename in _ONNX_FILES:
        try:
            path = fetch_model_file(source, filename, required=filename in ('model.onnx', 'preprocessor_config.json'),
                                    ask_hub=True)
        except MissingModelFileError as err:
            raise MissingModelFileError(
                f'{err} Make a local ONNX copy with `imgutils-facequal export {model_name}` (torch extra).'
            ) from err
        if path is not None:
            yield f'{model_name}: {filename} -> {path}'


def download_detectors() -> Iterator[str]:
    """Fetch the default face and head detector models imgutils uses; yields a line per file.

    A hub that cannot be reached stops the download at the first file, saying so (not that a
    file is missing).
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError, \
        OfflineModeIsEnabled
    for repo_id, filenames in DETECTOR_FILES.items():
        for filename in filenames:
            try:
                yield f'{repo_id}: {filename} -> {hf_hub_download(repo_id, filename)}'
            except (LocalEntryNotFoundError, OfflineModeIsEnabled) as err:  # before EntryNotFoundError: a subclass
                if not filename.endswith('model.onnx'):
                    continue  # the others are optional; a hub that cannot be reached shows at the model
                raise ModelNotAvailableError(
                    f'Cannot fetch {filename!r} of detector repo {repo_id!r}: it is not cached and '
                    f'{why_not_from_hub()}. Run it where the hub can be reached (HF_ENDPOINT may name a mirror).'
                ) from err
            except EntryNotFoundError:
                if filename.endswith('model.onnx'):
                    raise ModelNotAvailableError(f'Detector repo {repo_id!r} has no {filename!r}.')
            except HfHubHTTPError as err:
                raise ModelNotAvailableError(
                    f'Cannot fetch {filename!r} of detector repo {repo_id!r}: {err}. Run it with network access.'
                ) from err
            except Exception as err:
                if not hub_unreachable(err):
                    raise
                raise ModelNotAvailableError(
                    f'Cannot fetch {filename!r} of detector repo {repo_id!r}: {why_not_from_hub()}. Run it where the '
                    f'hub can be reached (HF_ENDPOINT may name a mirror).') from None
