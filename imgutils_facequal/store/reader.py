"""Reading saved scores back: whatever the writers made, as one set of rows.

`read_scores` takes a file, several files, globs, or folders of them (the outputs of
``score --shard I/N``, the Parquet shards of ``score --ray``), in any of the formats. Each
image counts once (`imgutils_facequal.store.complete`): an image found in two files (two
shards that overlapped, a run repeated into another file) keeps the first row of each of
its faces, and complete rows win over an error row from another file. Files recorded with settings that change results cannot be read as one:
the error names the two files and the setting.
"""
import glob
import os
from collections import Counter
from typing import Dict, List, NamedTuple, Optional, Sequence, Union

from . import formats
from .complete import INCOMPLETE, image_rows
from .provenance import describe_differences, differences

__all__ = ['SavedScores', 'score_files', 'read_scores']


class SavedScores(NamedTuple):
    """Saved scores read back.

    :ivar rows: Nested rows (per-image rows for ``score --per-image`` outputs), each image once.
    :ivar provenance: What produced them (the first file's record); ``None`` if no file has one.
    :ivar files: The files read, in order.
    :ivar repeated: Images found in more than one file (each counted once).
    :ivar incomplete: Images whose rows were cut short (an interrupted run), left out.
    """
    rows: List[dict]
    provenance: Optional[Dict]
    files: List[str]
    repeated: int = 0
    incomplete: int = 0

    @property
    def per_image(self) -> bool:
        """Whether the rows are one per image (``score --per-image``) rather than one per face."""
        return _per_image(self.provenance, self.rows)


def _per_image(provenance: Optional[Dict], rows: List[dict]) -> bool:
    return (provenance or {}).get('rows') == 'per image' or bool(rows) and 'face' not in rows[0]


_EXTENSIONS = tuple(extension for module in formats.MODULES.values() for extension in module.EXTENSIONS)


def _folder_files(folder: str) -> List[str]:
    return [os.path.join(folder, name) for name in sorted(os.listdir(folder))
            if name.lower().endswith(_EXTENSIONS) and not name.startswith(('.', '_'))
            and os.path.isfile(os.path.join(folder, name))]


def score_files(sources: Union[str, Sequence[str]]) -> List[str]:
    """The files that ``sources`` (files, folders, globs) name, in order, each once.

    :raises FileNotFoundError: When a source names nothing; the message names it and says
        how to write it.
    :raises ValueError: When a folder holds no saved scores.
    """
    found: List[str] = []
    for source in [sources] if isinstance(sources, (str, os.PathLike)) else list(sources):
        source = os.fspath(source)
        if os.path.isdir(source):
            files = _folder_files(source)
            if not files:
                raise ValueError(f'{source!r} holds no saved scores (files ending in {", ".join(_EXTENSIONS)}).')
        elif os.path.exists(source):
            files = [source]
        else:
            files = []
            for match in sorted(glob.glob(source, recursive=True)):
                files.extend(_folder_files(match) if os.path.isdir(match) else [match])
            files = [path for path in files if not path.endswith(('.meta.json', '.lock'))]
            if not files:
                raise FileNotFoundError(f'{source} does not exist; write it first with `imgutils-facequal score PATHS '
                                        f'-o {source}`.')
        found.extend(path for path in files if path not in found)
    return found


def read_scores(sources: Union[str, Sequence[str]], fmt: Optional[str] = None) -> SavedScores:
    """Saved scores from files, folders of shards or globs, each image once.

    :param sources: What `score_files` takes.
    :param fmt: The format of every file; default from each file's name.
    :raises FileNotFoundError: When a source names nothing.
    :raises ValueError: When a file is not saved scores (the message names the file and the
        line), or two files were scored with settings that change results (it names both
        files and the setting).

    Example:

        >>> from imgutils_facequal.store import read_scores
        >>> scores = read_scores('scores/')  # doctest: +SKIP
        >>> len(scores.files), len(scores.rows)  # doctest: +SKIP
        (4, 18211)
    """
    files = score_files(sources)
    reference: Optional[formats.FileScores] = None
    rows: List[dict] = []
    files_holding: Counter = Counter()  # how many files name each image
    per_image = False
    for path in files:
        found = formats.read_file(path, fmt)
        if found.provenance is not None:
            if reference is None:
                reference = found
            else:
                changed = differences(reference.provenance, found.provenance)
                if changed:
                    raise ValueError(
                        f'{reference.path} and {path} were scored with other settings '
                        f'({describe_differences(changed, "in the first", "in the second")}), so they cannot be read '
                        f'as one. Read them apart, or score one of them again with the settings of the other.')
        per_image = per_image or _per_image(found.provenance, found.rows)
        rows.extend(found.rows)
        files_holding.update({row['image'] for row in found.rows})
    states = image_rows(rows, per_image)
    kept = [row for found in states.values() if found.state != INCOMPLETE for row in found.rows]
    repeated = sum(1 for count in files_holding.values() if count > 1)
    incomplete = sum(1 for found in states.values() if found.state == INCOMPLETE)
    return SavedScores(kept, None if reference is None else reference.provenance, files, repeated, incomplete)
