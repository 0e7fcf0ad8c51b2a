"""Parquet: flat, typed rows with the provenance in the file's metadata; needs the ``parquet`` extra.

Parquet cannot be appended to, so a run writes complete part files beside its output
(``<output>.parts/part-NNNNN.parquet``), one every `IMAGES_PER_PART` images, and a finished
run merges them into ``<output>``: an interrupted run loses at most the part it was writing.
"""
import json
import os
from typing import Dict, List, Optional, Sequence

from ...atomic import replace_file
from ..schema import PROVENANCE_KEY, classes_of_columns, nested_row, per_image_row, rows_table

__all__ = ['NAME', 'EXTENSIONS', 'APPENDS', 'IMAGES_PER_PART', 'read', 'read_provenance', 'write', 'parts_dir',
           'parts']

NAME = 'parquet'
EXTENSIONS = ('.parquet',)
APPENDS = False
#: Images per part file of a run in progress.
IMAGES_PER_PART = 256


def read(path: str) -> List[dict]:
    """The rows of a Parquet file of the package's schema, nested or per image as its columns say."""
    import pyarrow.parquet as pq
    table = pq.read_table(path)
    if 'image' not in table.column_names or 'faces' not in table.column_names:
        raise ValueError(f'{path!r} has no image and faces columns: not an output of imgutils-facequal.')
    flat_rows = table.to_pylist()
    if 'face' not in table.column_names:
        return [per_image_row(flat) for flat in flat_rows]
    classes = classes_of_columns(table.column_names)
    return [nested_row(flat, classes) for flat in flat_rows]


def read_provenance(path: str) -> Optional[Dict]:
    """The provenance in a Parquet file's metadata; ``None`` if it has none."""
    import pyarrow.parquet as pq
    metadata = pq.read_schema(path).metadata or {}
    return json.loads(metadata[PROVENANCE_KEY]) if PROVENANCE_KEY in metadata else None


def write(path: str, rows: Sequence[dict], classes: Sequence[str], provenance: Optional[dict],
          per_image: bool = False) -> None:
    """Write rows to ``path`` whole (a temporary file renamed over it)."""
    import pyarrow.parquet as pq
    table = rows_table(rows, classes, provenance, per_image)
    replace_file(path, lambda staging: pq.write_table(table, staging), durable=True)


def parts_dir(path: str) -> str:
    return path + '.parts'


def parts(path: str) -> List[str]:
    """The complete part files of a run on ``path`` in progress, in order."""
    folder = parts_dir(path)
    if not os.path.isdir(folder):
        return []
    return sorted(os.path.join(folder, name) for name in os.listdir(folder)
                  if name.startswith('part-') and name.endswith('.parquet'))
