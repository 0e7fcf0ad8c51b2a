"""The ``score`` command's output: JSON Lines, CSV or Parquet rows, written as the run goes, resumable.

* JSON Lines and CSV are appended to, one flushed write per image. Every row carries
  ``faces``, the number of faces of its image, so a rerun tells a complete image from one
  cut short by an interrupt (``rows.complete_images``).
* Parquet cannot be appended to: the rows go into complete part files beside the output
  (``<output>.parts/``), one every :data:`IMAGES_PER_PART` images, which a finished run
  merges into ``<output>``. An interrupted run loses at most the part it was writing.
* ``<output>.meta.json`` records what produced the rows (``rows.provenance``); a rerun with
  other settings is refused, saying what differs.
* While a run writes an output it holds a lock on it: a second run on the same output stops
  at once, saying so.
* On a rerun, the rows of images that failed are dropped and those images are scored again.
  The file is rewritten then (to a temporary file beside it, then renamed), so it never is
  half-written.
* File names that are not valid UTF-8 are kept exactly: as ``\\udcXX`` escapes in JSON Lines,
  as their bytes in CSV.
"""
import csv
import io
import json
import os
import re
import sys
from typing import Dict, List, Optional, Sequence, Set, Tuple

from ..atomic import replace_file
from ..errors import OutputError, install_hint
from ..pipeline import ImageResult
from ..rows import (PER_IMAGE_COLUMNS, complete_images, flat_columns, flat_row, nested_row, per_image_row,
                    per_image_rows, per_image_schema, result_rows, rows_table)

__all__ = ['IMAGES_PER_PART', 'ScoreOutput', 'open_output', 'completed_images']

#: Images per Parquet part file.
IMAGES_PER_PART = 256
_LONE_SURROGATE = re.compile('[\udc80-\udcff]')


def _json_line(row: dict) -> str:
    # a name that is not UTF-8 holds lone surrogates (os.fsdecode): written as \udcXX escapes, read back as they were
    text = json.dumps(row, ensure_ascii=False)
    return _LONE_SURROGATE.sub(lambda match: '\\u%04x' % ord(match.group()), text) + '\n'


def _csv_text(records: List[list]) -> str:
    buffer = io.StringIO()
    # CRLF, as RFC 4180 has it: a name holding \r or \n is then quoted too, and reads back whole
    csv.writer(buffer, lineterminator='\r\n').writerows(records)
    return buffer.getvalue()


def _csv_record(row: dict, classes: Sequence[str], per_image: bool = False) -> list:
    values = [row.get(name) for name in PER_IMAGE_COLUMNS] if per_image else flat_row(row, classes).values()
    return ['' if value is None else value for value in values]


def _read_text_rows(path: str, fmt: str, per_image: bool = False) -> Tuple[List[dict], bool]:
    """The rows of a JSON Lines or CSV output, and whether its end was torn (a record without its line end)."""
    with open(path, 'rb') as file:
        data = file.read()
    text = data.decode('utf-8', errors='surrogateescape')
    torn = bool(text) and not text.endswith('\n')
    rows: List[dict] = []
    if fmt == 'jsonl':
        lines = text.split('\n')  # '\n' only: U+2028, U+0085 or \x1c inside a name are no line ends here
        for number, line in enumerate(lines[:-1], start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                row['image'], row['faces']
            except (KeyError, TypeError, ValueError) as err:
                raise ValueError(f'{path!r} line {number} is not a jsonl row of imgutils-facequal ({err}); use '
                                 f'another output file or the matching --format.') from err
            rows.append(row)
        return rows, torn
    records = []
    reader = csv.reader(io.StringIO(text, newline=''))
    try:
        for record in reader:
            records.append(record)
    except csv.Error:  # a quoted name cut off by a kill
        torn = True
    if torn and records:
        records.pop()
    if not records:
        return rows, torn
    header = records[0]
    if 'image' not in header or 'faces' not in header:
        raise ValueError(f'{path!r} line 1 is not the header of an imgutils-facequal csv output; use another output '
                         f'file or the matching --format.')
    for number, record in enumerate(records[1:], start=2):
        if len(record) != len(header):
            raise ValueError(f'{path!r} record {number} has {len(record)} columns, the header {len(header)}: not a '
                             f'csv output of imgutils-facequal; use another output file.')
        flat = dict(zip(header, record))
        rows.append(per_image_row(flat) if per_image else nested_row(flat))
    return rows, torn


def completed_images(path: str, fmt: str) -> Set[str]:
    """The images an earlier output holds complete rows of (error rows aside); reads the file only."""
    if not os.path.isfile(path):
        return set()
    rows, _ = _read_text_rows(path, fmt)
    done, _ = complete_images(rows)
    return done


class ScoreOutput:
    """Where ``score`` writes: a file (JSON Lines, CSV or Parquet parts) or standard output.

    ``done`` holds the images an earlier run completed; ``retried`` the images whose error
    rows were dropped to be scored again.
    """

    def __init__(self, path: Optional[str], fmt: str):
        self.path, self.fmt = path, fmt
        self.done: Set[str] = set()
        self.retried: Set[str] = set()
        self._stream = None
        self._lock_file = None
        self._part_rows: List[dict] = []
        self._part_images = 0
        self._previous: List[dict] = []
        self._old_parts: List[str] = []
        if path is not None:
            self._check_writable()
            self._lock()

    def start(self, classes: Sequence[str], provenance: dict, per_image: bool = False) -> 'ScoreOutput':
        """Check what produced the rows already there, read them, and get ready to write more."""
        self.classes, self.per_image = list(classes), per_image
        self.provenance = {**provenance, 'rows': 'per image' if per_image else 'per face'}
        if self.path is None:
            self._stream = sys.stdout
            if self.fmt == 'csv':
                self._write_text(_csv_text([self._columns()]))
            return self
        self._check_provenance()
        if self.fmt == 'parquet':
            self._resume_parquet()
        else:
            self._resume_text()
        self._write_provenance()
        return self

    # -- opening ---------------------------------------------------------------------------
    def _check_writable(self) -> None:
        folder = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(folder):
            raise OutputError(f'Cannot write {self.path!r}: the folder {folder!r} does not exist. Create it, or '
                              f'choose another --output.')
        if os.path.exists(self.path) and os.path.isdir(self.path):
            raise OutputError(f'Cannot write {self.path!r}: it is a folder. Give a file name as --output.')
        target = self.path if os.path.exists(self.path) else folder
        if not os.access(target, os.W_OK):
            raise OutputError(f'Cannot write {self.path!r}: permission denied. Choose another --output, or make '
                              f'{target!r} writable.')

    @property
    def _regular(self) -> bool:
        return not os.path.exists(self.path) or os.path.isfile(self.path)

    def _lock(self) -> None:
        if not self._regular:
            return  # a device or a pipe (/dev/stdout, /dev/full): nothing to resume, nothing to lock
        import fcntl
        self._lock_file = open(self.path + '.lock', 'a')
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_file.close()
            self._lock_file = None
            raise OutputError(f'{self.path!r} is in use: another imgutils-facequal run is writing it. Wait for it '
                              f'to finish, or choose another --output.') from None

    def _check_provenance(self) -> None:
        if not self._regular or not self._has_rows():
            return
        recorded = _read_json(self.path + '.meta.json')
        if recorded is None:
            raise OutputError(f'{self.path!r} holds rows but no record of what produced them '
                              f'({self.path}.meta.json is missing), so they cannot be resumed safely. Choose another '
                              f'--output, or move the file away.')
        differs = {key: (recorded.get(key), value) for key, value in self.provenance.items()
                   if recorded.get(key) != value and key != 'model'}  # the same files under another name resume
        if differs:
            listed = '; '.join(f'{key}: {old!r} in the file, {new!r} now' for key, (old, new) in differs.items())
            raise ValueError(f'{self.path!r} was written with other settings, so this run cannot resume it ({listed}). '
                             f'Use the same options as before, or choose another --output.')

    def _has_rows(self) -> bool:
        if self.fmt == 'parquet':
            return os.path.isfile(self.path) or bool(self._parts())
        return os.path.isfile(self.path) and os.path.getsize(self.path) > 0

    def _write_provenance(self) -> None:
        if self._regular:
            _write_atomically(self.path + '.meta.json', json.dumps(self.provenance, indent=2) + '\n')

    # -- JSON Lines and CSV ------------------------------------------------------------------
    def _resume_text(self) -> None:
        if self._regular and os.path.isfile(self.path):
            rows, torn = _read_text_rows(self.path, self.fmt, self.per_image)
            self.done, kept = complete_images(rows, per_image=self.per_image)
            self.retried = {row['image'] for row in rows if row.get('error')} - self.done
            if torn or len(kept) != len(rows):
                self._rewrite(kept)
        try:
            self._stream = open(self.path, 'a', encoding='utf-8', errors='surrogateescape', newline='')
        except OSError as err:
            raise OutputError(f'Cannot open {self.path!r} for writing: {err.strerror}.') from err
        if self.fmt == 'csv' and self._stream.tell() == 0 or self.fmt == 'csv' and not self._regular:
            self._write_text(_csv_text([self._columns()]))

    def _columns(self) -> List[str]:
        return list(PER_IMAGE_COLUMNS) if self.per_image else flat_columns(self.classes)

    def _rewrite(self, rows: List[dict]) -> None:
        if self.fmt == 'jsonl':
            text = ''.join(_json_line(row) for row in rows)
        else:
            text = _csv_text([self._columns()] + [_csv_record(row, self.classes, self.per_image) for row in rows])
        _write_atomically(self.path, text)

    def _write_text(self, text: str) -> None:
        try:
            self._stream.write(text)
            self._stream.flush()
        except OSError as err:
            raise OutputError(f'Cannot write to {self.path or "standard output"!r}: {err.strerror or err}. The rows '
                              f'written so far are kept; free some space (or fix the output) and run again to '
                              f'resume.') from err

    # -- Parquet -----------------------------------------------------------------------------
    def _parts_dir(self) -> str:
        return self.path + '.parts'

    def _parts(self) -> List[str]:
        folder = self._parts_dir()
        if not os.path.isdir(folder):
            return []
        return sorted(os.path.join(folder, name) for name in os.listdir(folder)
                      if name.startswith('part-') and name.endswith('.parquet'))

    def _resume_parquet(self) -> None:
        rows: List[dict] = []
        self._old_parts = self._parts()  # complete parts of an interrupted run: kept, merged once
        for path in ([self.path] if os.path.isfile(self.path) else []) + self._old_parts:
            rows.extend(self._read_parquet(path))
        self.done, _ = complete_images(rows, per_image=self.per_image)
        self.retried = {row['image'] for row in rows if row.get('error')} - self.done
        self._previous = [row for row in rows if row['image'] in self.done]

    def _flush_part(self) -> None:
        import pyarrow.parquet as pq
        if not self._part_rows:
            return
        os.makedirs(self._parts_dir(), exist_ok=True)
        target = os.path.join(self._parts_dir(), f'part-{len(self._parts()):05d}.parquet')
        staging = target + '.tmp'
        try:
            pq.write_table(self._table(self._part_rows), staging)
            os.replace(staging, target)
        except OSError as err:
            raise OutputError(f'Cannot write {target!r}: {err.strerror or err}. The parts written so far are '
                              f'kept; free some space and run again to resume.') from err
        self._part_rows, self._part_images = [], 0

    def _table(self, rows: List[dict]):
        if self.per_image:
            import pyarrow as pa
            return pa.Table.from_pylist([{name: row.get(name) for name in PER_IMAGE_COLUMNS} for row in rows],
                                        schema=per_image_schema(self.provenance))
        return rows_table(rows, self.classes, self.provenance)

    def _read_parquet(self, path: str) -> List[dict]:
        import pyarrow.parquet as pq
        table = pq.read_table(path)
        if self.per_image:
            return [per_image_row(flat) for flat in table.to_pylist()]
        classes = [name[2:] for name in table.column_names if name.startswith('p_')]
        return [nested_row(flat, classes) for flat in table.to_pylist()]

    # -- writing -----------------------------------------------------------------------------
    def write(self, result: ImageResult) -> None:
        rows = per_image_rows(result) if self.per_image else result_rows(result)
        if self.fmt == 'parquet':
            self._part_rows.extend(rows)
            self._part_images += 1
            if self._part_images >= IMAGES_PER_PART:
                self._flush_part()
        elif self.fmt == 'jsonl':
            self._write_text(''.join(_json_line(row) for row in rows))
        else:
            self._write_text(_csv_text([_csv_record(row, self.classes, self.per_image) for row in rows]))

    def close(self, finished: bool) -> None:
        """Flush what is pending; a finished Parquet run merges its parts into the output. Closing twice is
        closing once."""
        if getattr(self, '_closed', False):
            return
        self._closed = True
        try:
            if self.fmt == 'parquet' and self.path is not None:
                self._flush_part()
                if finished:
                    self._merge_parts()
        finally:
            if self._stream is not None and self._stream is not sys.stdout:
                try:
                    self._stream.close()
                except OSError:  # what it could not write was reported when the write failed
                    pass
            if self._lock_file is not None:
                self._lock_file.close()
                try:
                    os.remove(self.path + '.lock')
                except OSError:
                    pass

    def _merge_parts(self) -> None:
        import pyarrow.parquet as pq
        parts = self._parts()
        if not parts and os.path.isfile(self.path):
            return
        rows = list(self._previous)
        for path in parts:
            if path not in self._old_parts:
                rows.extend(self._read_parquet(path))
        staging = self.path + '.tmp'
        pq.write_table(self._table(rows), staging)
        os.replace(staging, self.path)
        for path in parts:
            os.remove(path)
        os.rmdir(self._parts_dir())


def open_output(path: Optional[str], fmt: str) -> ScoreOutput:
    """The output of a ``score`` run, checked and locked before any model loads; ``start`` it once the
    model is loaded (see the module docs)."""
    if fmt == 'parquet':
        if path is None:
            raise ValueError('--format parquet needs --output: Parquet cannot be streamed to standard output.')
        try:
            import pyarrow  # noqa: F401
        except ImportError as err:
            raise ValueError(f'--format parquet needs pyarrow: {install_hint("parquet")}') from err
    return ScoreOutput(path, fmt)


def _read_json(path: str) -> Optional[Dict]:
    try:
        with open(path, 'r', encoding='utf-8') as file:
            return json.load(file)
    except (OSError, ValueError):
        return None


def _write_atomically(path: str, text: str) -> None:
    try:
        replace_file(path, text, durable=True)
    except OSError as err:
        raise OutputError(f'Cannot write {path!r}: {err.strerror or err}. Nothing in it was changed.') from err
