"""The provenance of saved scores: what produced them, and whether other settings may add to them.

A provenance is a flat JSON object: every field of `imgutils_facequal.ScoringSettings`
under its own name (``backend`` and ``crop`` as they were resolved), the model's
repository, resolved commit and classes, what the rows hold (``rows``: ``per face`` or
``per image``), what ran them (``package``, ``version``, ``batch_size``, ``workers``), and
where: ``working_dir``, the folder the run was made in, which relative image paths are
relative to, and ``roots``, the inputs it was given, as absolute paths (both ``None`` when
not known: Ray actors run in folders of their own, so `score --ray` fills them in as it
writes the shards, and `score_dataset`'s rows from Python leave them ``None``).
It goes into ``<output>.meta.json`` beside JSON Lines and CSV, and into the metadata of
Parquet files and shards.

Two sets of rows may share an output (a resume) or be read as one (shards) when every
setting that changes results agrees. `RECORDED_ONLY` never blocks: the package version,
the device, the batch size and the workers, where the run was made, and the names a model was given (the same
repository and commit under another name is the same model). Nor does the backend between
`SAME_GRAPH_BACKENDS` in fp32: they run the same ``model.onnx`` (their rewrites are checked
against it to 1e-4), so their scores differ as another device's do, by float rounding.
"""
import os
from typing import Any, Dict, List, NamedTuple, Optional, Sequence

from .._version import __version__
from ..hub import resolved_commit
from ..models import resolve_model
from ..scoring import FaceQualityDetector
from ..settings import SETTING_NAMES, ScoringSettings

__all__ = ['RECORDED_ONLY', 'SAME_GRAPH_BACKENDS', 'Difference', 'make_provenance', 'normalise_provenance', 'differences',
           'describe_differences', 'settings_mismatches']

#: What a provenance records without it ever blocking a resume or a merge.
RECORDED_ONLY = frozenset({'package', 'version', 'device', 'batch_size', 'workers', 'model_name', 'revision',
                           'working_dir', 'roots'})

#: Backends that run the repository's ``model.onnx`` itself: in fp32 one may resume the other's rows.
SAME_GRAPH_BACKENDS = frozenset({'onnx', 'openvino'})


class Difference(NamedTuple):
    """A setting on which two provenances disagree."""
    name: str
    recorded: Any
    current: Any


def make_provenance(faces: FaceQualityDetector, per_image: bool = False, batch_size: Optional[int] = None,
                    workers: Optional[int] = None, working_dir: Optional[str] = None,
                    roots: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """The provenance of rows that ``faces`` produces.

    :param working_dir: The folder the run is made in (relative image paths are relative to it).
    :param roots: The files, folders or globs the run was given.
    """
    source = faces.classifier.source
    return {'package': 'imgutils-facequal', 'version': __version__, **faces.settings.as_dict(),
            'repo_id': source.repo_id, 'commit': resolved_commit(source), 'local_dir': source.local_dir,
            'classes': list(faces.classifier.classes), 'rows': 'per image' if per_image else 'per face',
            'batch_size': batch_size, 'workers': workers,
            'working_dir': None if working_dir is None else os.path.abspath(working_dir),
            'roots': None if roots is None else [os.path.abspath(root) for root in roots]}


# the names of 0.1.0's provenance, read from outputs written before the settings object
_LEGACY_DETECTOR_OPTIONS = {'conf_threshold': 'conf_threshold', 'iou_threshold': 'iou_threshold',
                            'level': 'detector_level', 'version': 'detector_version',
                            'model_name': 'detector_model_name'}
_LEGACY_HEAD_OPTIONS = {'level': 'head_level', 'version': 'head_version', 'infer_size': 'head_infer_size'}
# what outputs written before a setting existed ran with (the others were off: None)
_ADDED_SINCE = {'head_localisation': 'paired'}


def normalise_provenance(recorded: Dict[str, Any]) -> Dict[str, Any]:
    """A provenance read from a file, in today's names: one written by 0.1.0 (``model``,
    ``detector_options``, ``head_detector_options``) is translated, and a setting it lacks
    takes the value that version ran with."""
    recorded = dict(recorded)
    if 'model' in recorded and 'model_name' not in recorded:
        recorded['model_name'] = recorded.pop('model')
    for key, table in (('detector_options', _LEGACY_DETECTOR_OPTIONS), ('head_detector_options', _LEGACY_HEAD_OPTIONS)):
        options = recorded.pop(key, None)
        if isinstance(options, dict):
            for name, value in options.items():
                recorded.setdefault(table.get(name, name), value)
    for name in SETTING_NAMES:
        recorded.setdefault(name, _ADDED_SINCE.get(name))
    recorded.setdefault('rows', 'per face')
    return recorded


def _same(name: str, recorded: Any, current: Any) -> bool:
    if name == 'margin' and recorded is not None and current is not None:
        try:
            return abs(float(recorded) - float(current)) <= 1e-9
        except (TypeError, ValueError):  # a hand-edited record: a difference, named as one
            return False
    return recorded == current


def _same_graph(recorded: Dict[str, Any], backend: Any, precision: Any) -> bool:
    """Whether ``backend`` at ``precision`` runs the same graph, in fp32, as the ``recorded`` provenance."""
    return ({recorded.get('backend'), backend} <= SAME_GRAPH_BACKENDS
            and recorded.get('precision') in ('fp32', None) and precision in ('fp32', None))


def differences(recorded: Dict[str, Any], current: Dict[str, Any]) -> List[Difference]:
    """The settings that change results on which two provenances disagree (`RECORDED_ONLY` aside, and the
    backend between `SAME_GRAPH_BACKENDS` in fp32)."""
    recorded, current = normalise_provenance(recorded), normalise_provenance(current)
    return [Difference(name, recorded.get(name), current.get(name))
            for name in dict.fromkeys([*recorded, *current])
            if name not in RECORDED_ONLY and not _same(name, recorded.get(name), current.get(name))
            and not (name == 'backend' and _same_graph(recorded, current.get('backend'), current.get('precision')))]


def describe_differences(found: List[Difference], recorded_in: str = 'in the file', current_in: str = 'now') -> str:
    """``head_infer_size: 320 in the file, None now; margin: ...``"""
    return '; '.join(f'{item.name}: {item.recorded!r} {recorded_in}, {item.current!r} {current_in}' for item in found)


def settings_mismatches(recorded: Dict[str, Any], **given: Any) -> List[Difference]:
    """The settings ``given`` (by `imgutils_facequal.ScoringSettings` names) that the rows were not scored
    with. ``model_name`` matches the same repository or folder under any name; ``revision`` the name or the
    commit; ``backend='auto'`` any backend, and ``onnx`` or ``openvino`` either of them in fp32; ``device``
    anything.

    :raises TypeError: When a name is not a setting.
    """
    ScoringSettings.merged(**given)  # names and values checked
    recorded = normalise_provenance(recorded)
    found = []
    for name, value in given.items():
        if name == 'model_name':
            if value in (recorded.get('model_name'), recorded.get('repo_id'), recorded.get('local_dir')):
                continue
            try:
                source = resolve_model(value)
                if (source.repo_id, source.local_dir) == (recorded.get('repo_id'), recorded.get('local_dir')):
                    continue
            except (ValueError, LookupError, OSError):
                pass
        elif name == 'revision' and value in (recorded.get('revision'), recorded.get('commit')):
            continue
        elif name == 'device' or name == 'backend' and (
                value == 'auto' or _same_graph(recorded, value, given.get('precision', recorded.get('precision')))):
            continue
        elif _same(name, recorded.get(name), value):
            continue
        found.append(Difference(name, recorded.get(name), value))
    return found
