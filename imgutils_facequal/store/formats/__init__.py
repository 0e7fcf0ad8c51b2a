"""One reader and one writer per format of saved scores; a new format is one new module here.

Each module has ``NAME``, ``EXTENSIONS`` and ``APPENDS``. Appending formats (JSON Lines,
CSV) have ``read(path, text)``, ``header(classes, per_image)`` and ``encode(rows, classes,
per_image)``, with the provenance in ``<file>.meta.json``; Parquet has ``read(path)``,
``read_provenance(path)`` and ``write(...)``. `shards` is the folder of Parquet shards that
``score --ray`` writes.
"""
import json
import os
from typing import Dict, NamedTuple, Optional

from . import csv, jsonl, parquet, shards

__all__ = ['FORMATS', 'MODULES', 'format_for', 'FileScores', 'read_file', 'read_provenance', 'meta_path', 'shards']

#: The formats by name.
MODULES = {module.NAME: module for module in (jsonl, csv, parquet)}
#: The output formats, by name.
FORMATS = tuple(MODULES)


def format_for(path: Optional[str], fmt: Optional[str] = None) -> str:
    """``fmt``, else the format a file name's extension says (``.csv``, ``.parquet``), else ``jsonl``."""
    if fmt:
        return fmt
    lowered = (path or '').lower()
    return next((name for name, module in MODULES.items() if lowered.endswith(module.EXTENSIONS)), 'jsonl')


def meta_path(path: str) -> str:
    """Where the provenance of a JSON Lines or CSV output is kept."""
    return path + '.meta.json'


class FileScores(NamedTuple):
    """What one file of saved scores holds."""
    path: str
    rows: list
    provenance: Optional[Dict]
    torn: bool  # its last record was cut short


def read_provenance(path: str, fmt: Optional[str] = None) -> Optional[Dict]:
    """The provenance of a file of saved scores; ``None`` if it records none.

    :raises ValueError: When the record is there but damaged; the message names it.
    """
    if format_for(path, fmt) == 'parquet':
        return parquet.read_provenance(path)
    record = meta_path(path)
    if not os.path.lexists(record):
        return None
    if not os.path.isfile(record):
        raise ValueError(f'{record!r}, where the record of what produced {path!r} is kept, is not a file. Move it '
                         f'away to use the scores without a record.')
    try:
        with open(record, 'r', encoding='utf-8-sig') as file:
            found = json.load(file)
    except (OSError, ValueError) as err:
        raise ValueError(f'{record!r}, the record of what produced {path!r}, cannot be read ({err}). Restore it, or '
                         f'delete it to use the scores without it.') from err
    if not isinstance(found, dict):
        raise ValueError(f'{record!r}, the record of what produced {path!r}, is not a JSON object.')
    return found


def read_file(path: str, fmt: Optional[str] = None) -> FileScores:
    """The rows of one file of saved scores (nested, or per image), its provenance, and whether it was torn.

    :raises ValueError: When it is no output of that format; the message names the line.
    :raises OSError: When it cannot be read.
    """
    module = MODULES[format_for(path, fmt)]
    provenance = read_provenance(path, module.NAME)
    if not module.APPENDS:
        return FileScores(path, module.read(path), provenance, False)
    with open(path, 'rb') as file:
        text = file.read().decode('utf-8', errors='surrogateescape')
    rows, torn = module.read(path, text.lstrip('\ufeff'))  # a byte-order mark, as Excel and Notepad save
    return FileScores(path, rows, provenance, torn)
