"""The resumable writer of saved scores: what ``score -o`` writes through, usable from Python.

* JSON Lines and CSV are appended to, one flushed write per image; Parquet goes into part
  files that a finished run merges (`imgutils_facequal.store.formats.parquet`).
* The provenance (`imgutils_facequal.store.provenance`) is kept beside the rows. A rerun
  with a setting that changes results is refused, naming the setting and both values;
  the version, the device, the batch size and the workers never block it.
* A rerun skips the images whose rows are complete (`imgutils_facequal.store.complete`),
  keyed by real path, so the same folder spelled ``frames``, ``./frames`` or its absolute
  path resumes to one set of rows. The rows of images that failed are dropped, and those
  images are scored again; the file is then rewritten whole (`imgutils_facequal.atomic`).
* While a run writes an output it holds a lock on ``<output>.lock`` (``filelock``, on every
  system): a second run on the same output stops at once, saying so. Before each write the
  run checks that the lock file is still the one it locked; if another run took the output
  meanwhile (the lock file was deleted), this one stops, so two runs never write one output.
* The companion files (``<output>.lock``, ``<output>.meta.json``, ``<output>.parts``) are
  checked before anything loads: a folder in their place, or a name too long for them, is
  an `imgutils_facequal.errors.OutputError`.

Example:

    >>> from imgutils_facequal import find_images, load_face_quality_detector, score_images_with
    >>> from imgutils_facequal.store import ScoresWriter, make_provenance
    >>> faces = load_face_quality_detector()  # doctest: +SKIP
    >>> with ScoresWriter('scores.jsonl') as out:  # doctest: +SKIP
    ...     out.start(faces.classifier.classes, make_provenance(faces))
    ...     todo = [image for image in find_images(['frames/']) if not out.is_done(image.path)]
    ...     for result in score_images_with(faces, todo):
    ...         out.write(result)
"""
import json
import os
import sys
from typing import Dict, List, Optional, Sequence, Set

from ..atomic import replace_file
from ..errors import OutputError, install_hint
from ..pipeline import ImageResult
from . import formats
from .complete import complete_images
from .formats import parquet
from .paths import image_key
from .provenance import describe_differences, differences
from .schema import per_image_rows, result_rows

__all__ = ['ScoresWriter']


class ScoresWriter:
    """Where a run writes its rows: a file (JSON Lines, CSV or Parquet), or standard output (``path=None``).

    Open it (it checks the output and takes the lock before any model loads), `start` it
    with the classes and the provenance, `write` each result, then `close` it (or use it as
    a context manager, which closes it as finished unless an exception left it).

    :param path: The output file; ``None`` for standard output (JSON Lines or CSV).
    :param fmt: ``jsonl``, ``csv`` or ``parquet``; default from the file name.
    :raises OutputError: When the output cannot be written or another run holds it.
    :raises ValueError: When the format cannot go there (Parquet to standard output, or
        without pyarrow).

    :ivar done: The keys (`imgutils_facequal.store.paths.image_key`) of the images complete
        in the output before this run; see `is_done`.
    :ivar retried: Keys of the images whose error rows were dropped, to be scored again.
    """

    def __init__(self, path: Optional[str], fmt: Optional[str] = None):
        self.path, self.fmt = path, formats.format_for(path, fmt)
        self.module = formats.MODULES[self.fmt]
        self.done: Set[str] = set()
        self.retried: Set[str] = set()
        self._stream = None
        self._lock = None
        self._lock_identity = None
        self._lost = False  # another run took the output: write nothing more
        self._closed = False
        self._part_rows: List[dict] = []
        self._part_images = 0
        self._previous: List[dict] = []
        self._old_parts: List[str] = []
        if self.fmt == 'parquet':
            if path is None:
                raise ValueError('Parquet cannot be streamed to standard output: give an output file.')
            try:
                import pyarrow  # noqa: F401
            except ImportError as err:
                raise ValueError(f'Parquet output needs pyarrow: {install_hint("parquet")}') from err
        if path is not None:
            self._check_writable()
            if self._regular:
                self._check_companions()
            self._take_lock()

    def __enter__(self) -> 'ScoresWriter':
        return self

    def __exit__(self, kind, value, traceback) -> None:
        self.close(finished=kind is None)

    def is_done(self, path: str) -> bool:
        """Whether an image (however its path is spelled) is complete in the output already."""
        return image_key(path) in self.done

    def start(self, classes: Sequence[str], provenance: Dict) -> 'ScoresWriter':
        """Check what produced the rows already there, read them, and get ready to write more.

        :param provenance: What produces this run's rows
            (`imgutils_facequal.store.make_provenance`); its ``rows`` says per face or per image.
        :raises ValueError: When the rows there were made with settings that change results.
        """
        self.classes, self.provenance = list(classes), dict(provenance)
        self.per_image = self.provenance.get('rows') == 'per image'
        if self.path is None:
            self._stream = sys.stdout
            self._write_text(self.module.header(self.classes, self.per_image))
            return self
        self._check_provenance()
        if self.fmt == 'parquet':
            self._resume_parquet()
        else:
            self._resume_text()
        self._write_provenance()
        return self

    # -- opening ---------------------------------------------------------------------------
    @property
    def _regular(self) -> bool:
        return not os.path.exists(self.path) or os.path.isfile(self.path)

    def _check_writable(self) -> None:
        folder = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(folder):
            raise OutputError(f'Cannot write {self.path!r}: the folder {folder!r} does not exist. Create it, or '
                              f'choose another output.')
        if os.path.isdir(self.path):
            raise OutputError(f'Cannot write {self.path!r}: it is a folder. Give a file name as the output.')
        target = self.path if os.path.exists(self.path) else folder
        if not os.access(target, os.W_OK):
            raise OutputError(f'Cannot write {self.path!r}: permission denied. Choose another output, or make '
                              f'{target!r} writable.')

    def _companions(self) -> Dict[str, str]:
        found = {self.path + '.lock': 'its lock'}
        if self.fmt == 'parquet':
            found[parquet.parts_dir(self.path)] = 'the part files of a run in progress'
        else:
            found[formats.meta_path(self.path)] = 'the record of what produced it'
        return found

    def _check_companions(self) -> None:
        folder = os.path.dirname(os.path.abspath(self.path))
        longest = _name_max(folder)
        for companion, role in self._companions().items():
            name = os.path.basename(companion)
            if len(os.fsencode(name)) > longest:
                raise OutputError(f'Cannot write {self.path!r}: its name is too long for the files kept beside it '
                                  f'({name!r}, {role}, would be {len(os.fsencode(name))} bytes; this file system '
                                  f'allows {longest}). Choose a shorter output name.')
            wanted_folder = companion.endswith('.parts')
            if os.path.lexists(companion) and os.path.isdir(companion) != wanted_folder:
                kind = 'a file' if wanted_folder else 'a folder'
                raise OutputError(f'Cannot write {self.path!r}: {companion!r}, where imgutils-facequal keeps {role}, '
                                  f'is {kind}. Move it away, or choose another output.')

    def _acquire_lock(self):
        """The lock on ``<output>.lock`` and the file's identity; raises ``filelock.Timeout`` when another run holds
        it, ``OSError`` when it cannot be taken."""
        import filelock
        lock = filelock.FileLock(self.path + '.lock', timeout=0)
        lock.acquire()
        return lock, _identity(self.path + '.lock')

    def _take_lock(self) -> None:
        if not self._regular:
            return  # a device or a pipe (/dev/stdout, /dev/full): nothing to resume, nothing to lock
        import filelock
        try:
            self._lock, self._lock_identity = self._acquire_lock()
        except filelock.Timeout:
            raise OutputError(f'{self.path!r} is in use: another imgutils-facequal run is writing it. Wait for it '
                              f'to finish, or choose another output.') from None
        except OSError as err:
            raise OutputError(f'Cannot lock {self.path!r} ({self.path}.lock: {err.strerror or err}). Choose another '
                              f'output.') from err

    def _holds_lock(self) -> bool:
        """Whether ``<output>.lock`` is still the file this run locked (the open lock keeps its identity unique)."""
        try:
            return _identity(self.path + '.lock') == self._lock_identity
        except OSError:
            return False

    def _check_lock(self) -> None:
        """Stop, writing nothing more, when the lock file was deleted and another run took the output; a lock
        file deleted with no run behind it is taken again."""
        if self._lock is None or self._holds_lock():
            return
        import filelock
        previous = self._lock
        try:
            self._lock, self._lock_identity = self._acquire_lock()
        except (filelock.Timeout, OSError) as err:
            self._lost = True
            why = ('another run holds it now' if isinstance(err, filelock.Timeout)
                   else f'it cannot be locked again ({err.strerror or err})')
            raise OutputError(f'{self.path}.lock was deleted while this run wrote {self.path!r}, and {why}. This run '
                              f'stopped writing, so that two runs never write one output; the rows written so far '
                              f'are kept. Run again when the other run has finished, to resume.') from None
        previous.release()

    def _has_rows(self) -> bool:
        if self.fmt == 'parquet':
            return os.path.isfile(self.path) or bool(parquet.parts(self.path))
        return os.path.isfile(self.path) and os.path.getsize(self.path) > 0

    def _check_provenance(self) -> None:
        if not self._regular or not self._has_rows():
            return
        if self.fmt == 'parquet' and not os.path.isfile(self.path):  # an interrupted first run: its parts only
            recorded = formats.read_provenance(parquet.parts(self.path)[0], 'parquet')
        else:
            recorded = formats.read_provenance(self.path, self.fmt)
        if recorded is None:
            raise OutputError(f'{self.path!r} holds rows but no record of what produced them '
                              f'({formats.meta_path(self.path)} is missing), so they cannot be resumed safely. '
                              f'Choose another output, or move the file away.')
        found = differences(recorded, self.provenance)
        if found:
            raise ValueError(f'{self.path!r} was written with other settings, so this run cannot add to it '
                             f'({describe_differences(found)}). Score with the same settings as before to resume it, '
                             f'or start a fresh output: another output file, or move {self.path!r} and its '
                             f'.meta.json away.')

    def _write_provenance(self) -> None:
        if self._regular:
            self._replace(formats.meta_path(self.path), json.dumps(self.provenance, indent=2) + '\n')

    def _replace(self, path: str, content) -> None:
        try:
            replace_file(path, content, durable=True)
        except OSError as err:
            raise OutputError(f'Cannot write {path!r}: {err.strerror or err}. Nothing in it was changed.') from err

    def _keep_complete(self, rows: List[dict]) -> List[dict]:
        self.done, kept = complete_images(rows, per_image=self.per_image)
        self.retried = {image_key(row['image']) for row in rows if row.get('error')} - self.done
        return kept

    # -- JSON Lines and CSV ------------------------------------------------------------------
    def _resume_text(self) -> None:
        if self._regular and os.path.isfile(self.path):
            found = formats.read_file(self.path, self.fmt)
            kept = self._keep_complete(found.rows)
            if found.torn or len(kept) != len(found.rows) or not self._same_header():
                self._replace(self.path, self.module.header(self.classes, self.per_image)
                              + self.module.encode(kept, self.classes, self.per_image))
        try:
            self._stream = open(self.path, 'a', encoding='utf-8', errors='surrogateescape', newline='')
        except OSError as err:
            raise OutputError(f'Cannot open {self.path!r} for writing: {err.strerror}.') from err
        if not self._regular or self._stream.tell() == 0:
            self._write_text(self.module.header(self.classes, self.per_image))

    def _same_header(self) -> bool:
        """Whether the file starts with this version's header (a CSV of an older one may lack a column)."""
        header = self.module.header(self.classes, self.per_image)
        with open(self.path, encoding='utf-8', errors='surrogateescape', newline='') as file:
            return not header or file.read(len(header)) == header

    def _write_text(self, text: str) -> None:
        if not text:
            return
        try:
            self._stream.write(text)
            self._stream.flush()
        except OSError as err:
            raise OutputError(f'Cannot write to {self.path or "standard output"!r}: {err.strerror or err}. The rows '
                              f'written so far are kept; free some space (or fix the output) and run again to '
                              f'resume.') from err

    # -- Parquet -----------------------------------------------------------------------------
    def _resume_parquet(self) -> None:
        rows: List[dict] = []
        self._old_parts = parquet.parts(self.path)  # complete parts of an interrupted run: kept, merged once
        for path in ([self.path] if os.path.isfile(self.path) else []) + self._old_parts:
            rows.extend(parquet.read(path))
        self._previous = self._keep_complete(rows)

    def _flush_part(self) -> None:
        if not self._part_rows:
            return
        self._check_lock()
        folder = parquet.parts_dir(self.path)
        target = os.path.join(folder, 'part-NNNNN.parquet')
        try:
            os.makedirs(folder, exist_ok=True)
            target = os.path.join(folder, f'part-{len(parquet.parts(self.path)):05d}.parquet')
            parquet.write(target, self._part_rows, self.classes, self.provenance, self.per_image)
        except OSError as err:
            raise OutputError(f'Cannot write {target!r}: {err.strerror or err}. The parts written so far are '
                              f'kept; free some space and run again to resume.') from err
        self._part_rows, self._part_images = [], 0

    def _merge_parts(self) -> None:
        written = parquet.parts(self.path)
        if not written and os.path.isfile(self.path) and not self._old_parts:
            return
        self._check_lock()
        rows = list(self._previous)
        for path in written:
            if path not in self._old_parts:
                rows.extend(parquet.read(path))
        try:
            parquet.write(self.path, rows, self.classes, self.provenance, self.per_image)
        except OSError as err:
            raise OutputError(f'Cannot write {self.path!r}: {err.strerror or err}. The parts written so far are '
                              f'kept in {parquet.parts_dir(self.path)}; free some space and run again to '
                              f'finish.') from err
        try:
            for path in written:
                os.remove(path)
            os.rmdir(parquet.parts_dir(self.path))
        except OSError as err:  # the output is whole; a rerun merges the parts left over into it once
            raise OutputError(f'{self.path!r} is written, but {parquet.parts_dir(self.path)} could not be removed '
                              f'({err.strerror or err}); run again to tidy it up.') from err

    # -- writing -----------------------------------------------------------------------------
    def write(self, result: ImageResult) -> None:
        """Write the rows of one image."""
        rows = per_image_rows(result) if self.per_image else result_rows(result)
        if self._lost:
            raise OutputError(f'{self.path!r} is being written by another run; this run writes nothing more.')
        self._check_lock()
        if self.fmt == 'parquet':
            self._part_rows.extend(rows)
            self._part_images += 1
            if self._part_images >= parquet.IMAGES_PER_PART:
                self._flush_part()
        else:
            self._write_text(self.module.encode(rows, self.classes, self.per_image))

    def close(self, finished: bool = True) -> None:
        """Flush what is pending and let go of the lock; a finished Parquet run merges its parts into the
        output. Closing twice is closing once."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.fmt == 'parquet' and self.path is not None and hasattr(self, 'classes') and not self._lost:
                self._flush_part()
                if finished:
                    self._merge_parts()
        finally:
            if self._stream is not None and self._stream is not sys.stdout:
                try:
                    self._stream.close()
                except OSError:  # what it could not write was reported when the write failed
                    pass
            if self._lock is not None:
                if self._holds_lock():  # removed while still held: never another run's lock file
                    try:
                        os.remove(self.path + '.lock')
                    except OSError:  # Windows: a locked file cannot be removed; filelock removes it on release
                        pass
                self._lock.release()


def _identity(path: str):
    found = os.stat(path)
    return found.st_dev, found.st_ino


def _name_max(folder: str) -> int:
    """The longest file name, in bytes, the file system of ``folder`` allows (255 where it cannot be asked)."""
    try:
        return os.pathconf(folder, 'PC_NAME_MAX')
    except (AttributeError, OSError, ValueError):  # Windows has no pathconf
        return 255
