"""Result rows for the command-line tool: JSON Lines or CSV, flushed per image, resumable.

Every row carries ``faces``, the number of faces of its image, so a reader can tell a
complete image from one cut short by an interrupt. On resume, a half-written last line
and the rows of an image left incomplete are cut off, and the images already complete
are skipped.
"""
import csv
import io
import json
import os
from typing import List, Optional, Sequence, Set, Tuple

from ..pipeline import ImageResult
from ..rows import flat_columns, flat_row, result_rows

__all__ = ['ResultWriter', 'completed_images']


def _csv_row(row: dict, classes: Sequence[str]) -> list:
    return ['' if value is None else value for value in flat_row(row, classes).values()]


def _parse_line(line: str, fmt: str, header: Optional[List[str]]) -> Optional[Tuple[str, Optional[int], bool]]:
    """``(image, faces, failed)`` of a row, or ``None`` for a header line."""
    if fmt == 'jsonl':
        row = json.loads(line)
        return row['image'], row.get('faces'), bool(row.get('error'))
    values = next(csv.reader([line]))
    if header is None or values == header:
        return None
    row = dict(zip(header, values))
    return row['image'], int(row['faces']) if row['faces'] != '' else None, bool(row['error'])


def completed_images(path: str, fmt: str) -> Set[str]:
    """Images fully written to an earlier output; cuts off a torn last line or image.

    :raises ValueError: When the file is not an output of this format.
    """
    if not os.path.exists(path):
        return set()
    with open(path, 'rb') as f:
        data = f.read()
    end = data.rfind(b'\n') + 1  # a line without its newline was torn by a kill
    lines = data[:end].decode('utf-8').splitlines(keepends=True)
    header = None
    done: Set[str] = set()
    offset = 0
    group_image, group_start, group_rows, group_expected, group_failed = None, 0, 0, None, False
    for number, line in enumerate(lines, start=1):
        try:
            if fmt == 'csv' and number == 1:
                header = next(csv.reader([line]))
                offset += len(line.encode('utf-8'))
                continue
            parsed = _parse_line(line, fmt, header)
        except (ValueError, KeyError, StopIteration) as err:
            raise ValueError(f'{path!r} line {number} is not a {fmt} row of imgutils-facequal ({err}); '
                             f'use another output file or the matching --format.') from err
        if parsed is not None:
            image, faces, failed = parsed
            if image != group_image:
                if group_image is not None:
                    done.add(group_image)
                group_image, group_start, group_rows, group_expected, group_failed = image, offset, 0, faces, failed
            group_rows += 1
        offset += len(line.encode('utf-8'))
    cut = end
    if group_image is not None:
        if group_failed or group_expected in (0, None) or group_rows >= group_expected:
            done.add(group_image)
        else:
            cut = group_start
    if cut != len(data):
        with open(path, 'r+b') as f:
            f.truncate(cut)
    return done


class ResultWriter:
    """Appends rows to a file (or writes them to a stream), one flushed write per image."""

    def __init__(self, stream, fmt: str, classes: Sequence[str], write_header: bool):
        self.stream = stream
        self.fmt = fmt
        self.classes = list(classes)
        if fmt == 'csv' and write_header:
            self._write([flat_columns(self.classes)])

    def _write(self, csv_rows: List[list]) -> None:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator='\n').writerows(csv_rows)
        self.stream.write(buffer.getvalue())
        self.stream.flush()

    def write(self, result: ImageResult) -> None:
        rows = result_rows(result)
        if self.fmt == 'jsonl':
            self.stream.write(''.join(json.dumps(row, ensure_ascii=False) + '\n' for row in rows))
            self.stream.flush()
        else:
            self._write([_csv_row(row, self.classes) for row in rows])

