"""CSV: flat rows (no head box), a header line, records appended as a run goes; the provenance in
``<file>.meta.json``. Records end in CRLF, as RFC 4180 has it, so a name holding a line break is
quoted and reads back whole; names that are not valid UTF-8 are kept as their bytes.
"""
import csv
import io
from typing import List, Sequence, Tuple

from ..schema import PER_IMAGE_COLUMNS, checked_rows, classes_of_columns, flat_columns, flat_row, nested_row, per_image_row

__all__ = ['NAME', 'EXTENSIONS', 'APPENDS', 'read', 'header', 'encode']

NAME = 'csv'
EXTENSIONS = ('.csv',)
APPENDS = True


def read(path: str, text: str) -> Tuple[List[dict], bool]:
    """The rows of ``text`` (the file's), nested or per image as its header says, and whether its end was torn."""
    torn = bool(text) and not text.endswith('\n')
    records = []
    try:
        for record in csv.reader(io.StringIO(text, newline='')):
            records.append(record)
    except csv.Error:  # a quoted name cut off by a kill
        torn = True
    if torn and records:
        records.pop()
    if not records:
        return [], torn
    columns = records[0]
    if 'image' not in columns or 'faces' not in columns:
        raise ValueError(f'{path!r} line 1 is not the header of an imgutils-facequal csv output.')
    per_image = 'face' not in columns
    classes = classes_of_columns(columns)

    def rows():
        for number, record in enumerate(records[1:], start=2):
            if len(record) != len(columns):
                raise ValueError(f'{path!r} record {number} has {len(record)} columns, the header {len(columns)}: '
                                 f'not a csv output of imgutils-facequal.')
            flat = dict(zip(columns, record))
            try:
                yield number, per_image_row(flat) if per_image else nested_row(flat, classes)
            except (KeyError, ValueError) as err:
                raise ValueError(f'{path!r} record {number} is not a csv row of imgutils-facequal ({err}).') from err

    return checked_rows(path, rows(), classes or None, unit='record'), torn


def _text(records) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator='\r\n').writerows(records)
    return buffer.getvalue()


def header(classes: Sequence[str], per_image: bool) -> str:
    return _text([list(PER_IMAGE_COLUMNS) if per_image else flat_columns(classes)])


def encode(rows: Sequence[dict], classes: Sequence[str], per_image: bool) -> str:
    def values(row):
        flat = [row.get(name) for name in PER_IMAGE_COLUMNS] if per_image else flat_row(row, classes).values()
        return ['' if value is None else value for value in flat]
    return _text([values(row) for row in rows])
