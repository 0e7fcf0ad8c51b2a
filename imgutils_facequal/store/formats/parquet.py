"""Parquet: flat, typed rows with the provenance in the file's metadata; needs the ``parquet`` extra.

Parquet cannot be appended to, so a run writes complete part files beside its output
(``<output>.parts/part-NNNNN.parquet``), one every `IMAGES_PER_PART` images, and a finished
run merges them into ``<output>``: an interrupted run loses at most the part it was writing.
"""
import json
import os
from typing import Dict, List, Optional, Sequence

from ...atomic import replace_file
from ..paths import path_from_text
from ..schema import PROVENANCE_KEY, checked_rows, classes_of_columns, nested_row, per_image_row, rows_table

__all__ = ['NAME', 'EXTENSIONS', 'APPENDS', 'IMAGES_PER_PART', 'read', 'read_provenance', 'write', 'parts_dir',
           'parts']

NAME = 'parquet'
EXTENSIONS = ('.parquet',)
APPENDS = False
#: Images per part file of a run in progress.
IMAGES_PER_PART = 256


def read(path: str) -> List[dict]:
    """The rows of a Parquet file of the package's schema, nested or per image as its columns say, each
    checked (`imgutils_facequal.store.schema.check_row`; the message names the row, from 1).

    :raises ValueError: When it is no output of the package, or a row is not of its schema.
    """
    import pyarrow.parquet as pq
    table = pq.read_table(path)
    if 'image' not in table.column_names or 'faces' not in table.column_names:
        raise ValueError(f'{path!r} has no image and faces columns: not an output of imgutils-facequal.')
    per_image = 'face' not in table.column_names
    classes = classes_of_columns(table.column_names)

    def rows():
        for number, flat in enumerate(table.to_pylist(), start=1):
            if isinstance(flat['image'], str):
                flat['image'] = path_from_text(flat['image'])
            try:
                yield number, per_image_row(flat) if per_image else nested_row(flat, classes)
            except (KeyError, ValueError) as err:
                raise ValueError(f'{path!r} row {number}: {err}. Correct or remove that row, or score the '
                                 f'images again.') from None

    return checked_rows(path, rows(), classes or None, unit='row')


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
