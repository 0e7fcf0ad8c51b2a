"""Curating a dataset from saved scores: which images and faces a threshold keeps, and putting
them in a folder without ever losing or half-writing a file.

Everything here works on the nested rows of a ``score`` output (`imgutils_facequal.rows.read_rows`
reads JSON Lines, CSV and Parquet), or on a pandas DataFrame of them, nested or flat; no
model is loaded.

* `threshold_table`: how many images and faces each ``min_quality`` class and each
  ``min_score`` step keeps, to choose a threshold before filtering.
* `kept_images` and `kept_faces`: what a threshold keeps.
* `filter_images` (and the `FolderFilter` behind it and the ``filter`` command): copy,
  hard-link or move the kept images, with their captions and other sidecars, to a
  folder; optionally the others to a second one; a manifest of what was kept.
* `place_file`: the one file operation under all of it. It never replaces an existing
  file (the name is claimed with a hard link, which fails if it exists, so two runs
  into one folder cannot overwrite each other's files), and it writes a copy under a
  temporary name in the destination folder first, so a full disk or a kill leaves no
  partial file under the real name.
* `output_stems` and `output_paths`: file names under an output folder that no two
  inputs share (``x.png`` and ``x.jpg`` side by side; ``a/x.png`` and ``b/x.png`` from two
  roots).

A face "reaches" ``min_quality`` when its class ranks at or above it, and ``min_score``
when its quality value (`imgutils_facequal.face_quality_value`) is at least it. An image
passes when its best face reaches both (with ``every_face``, when every face does); an
image without a face never passes.
"""
import errno
import filecmp
import math
import os
import shutil
import tempfile
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

from .models import resolve_model
from .pipeline import IMAGE_EXTENSIONS, ImageResult, InputImage
from .quality import QUALITY_ORDER, quality_ranks
from .rows import nested_row, result_rows
from .scoring import FaceQualityResult

__all__ = [
    'DEFAULT_SIDECARS', 'DEFAULT_SCORE_STEPS', 'MODES', 'ThresholdRow', 'ThresholdTable', 'FilterSummary',
    'FolderFilter', 'scored_images', 'face_passes', 'image_passes', 'kept_images', 'kept_faces',
    'threshold_table', 'table_of', 'place_file', 'write_new_file', 'find_sidecars', 'output_stems', 'output_paths',
    'output_stem', 'filter_images', 'write_manifest', 'common_root', 'provenance_mismatches', 'Outcome',
    'rows_of',
]

#: Files that travel with an image: ``{stem}`` is the image's name without its extension.
#: A pattern without ``{stem}`` is an extension (``.txt`` means ``{stem}.txt``); the last
#: one is waifuc's metadata file.
DEFAULT_SIDECARS = ('.txt', '.caption', '.json', '.npz', '.{stem}_meta.json')
#: The ``min_score`` steps of `threshold_table`.
DEFAULT_SCORE_STEPS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
#: How `place_file` puts a file in place.
MODES = ('copy', 'hardlink', 'move')

_INT_FIELDS = ('face', 'faces', 'width', 'height')
# a filesystem that has no hard links says so with one of these
_NO_LINKS = {errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOSYS, getattr(errno, 'ENOTSUP', errno.EOPNOTSUPP),
             errno.EOPNOTSUPP}


# ---------------------------------------------------------------------------------------------- rows


def _plain(value):
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, 'tolist'):  # numpy arrays and scalars from a DataFrame
        return _plain(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _records(rows) -> List[dict]:
    """Nested rows from a list of rows or a pandas DataFrame (nested or flat columns)."""
    records = rows.to_dict('records') if hasattr(rows, 'to_dict') and hasattr(rows, 'columns') else rows
    result = []
    for record in records:
        record = {key: _plain(value) for key, value in record.items()}
        if 'bbox' not in record and 'x0' in record:
            record = nested_row(record)
        for name in _INT_FIELDS:
            if record.get(name) is not None:
                record[name] = int(record[name])
        if isinstance(record.get('scores'), dict):  # pyarrow gives absent map keys as None
            record['scores'] = {key: value for key, value in record['scores'].items() if value is not None}
        result.append(record)
    return result


def common_root(paths: Iterable[str]) -> str:
    """The deepest folder holding every path (relative when every path is): relative output paths
    are taken from it, so ``frames/a.png`` and ``frames/ep2/b.png`` go to ``a.png`` and ``ep2/b.png``."""
    paths = list(paths)
    if not paths:
        return '.'
    if all(not os.path.isabs(path) for path in paths):
        folders = [os.path.normpath(os.path.dirname(path) or '.') for path in paths]
    else:
        folders = [os.path.dirname(os.path.abspath(path)) for path in paths]
    try:
        return os.path.commonpath(folders) or '.'
    except ValueError:  # paths on different drives
        return folders[0]


def _face(row: dict) -> FaceQualityResult:
    def box(key, kind):
        value = row.get(key)
        return None if value is None else tuple(kind(v) for v in value)
    return FaceQualityResult(bbox=box('bbox', int), label=row['label'], score=row.get('score'),
                             scores=dict(row.get('scores') or {}), quality=row.get('quality'),
                             detection_score=row.get('detection_score'), head_bbox=box('head_bbox', float),
                             crop_bbox=box('crop_bbox', int))


def scored_images(rows, root: Optional[str] = None) -> List[ImageResult]:
    """The saved rows of a run as one `imgutils_facequal.ImageResult` per image, in file order.

    :param rows: Nested rows (`imgutils_facequal.rows.read_rows`) or a DataFrame of them.
    :param root: The folder output paths are taken relative to; default the deepest folder
        that holds every image (`common_root`).
    :return: Results as the pipeline gives them, without decoded images. A row repeated
        for the same face (a file appended to twice) counts once.
    """
    groups: Dict[str, List[dict]] = OrderedDict()
    for row in _records(rows):
        groups.setdefault(row['image'], []).append(row)
    root = common_root(groups) if root is None else root
    results = []
    for path, image_rows in groups.items():
        result = ImageResult(InputImage(path, root))
        errors = [row.get('error') for row in image_rows if row.get('error')]
        if errors:
            result.error = errors[-1]
            results.append(result)
            continue
        first = image_rows[0]
        if first.get('width') is not None:
            result.size = (first['width'], first['height'])
        faces = {}
        for row in image_rows:
            if row.get('face') is not None and row.get('label') is not None:
                faces[row['face']] = _face(row)
        result.faces = [faces[index] for index in sorted(faces)]
        results.append(result)
    return results


# ----------------------------------------------------------------------------------------- selection


def _classes(face: FaceQualityResult) -> List[str]:
    return list(face.scores) if face.scores else list(QUALITY_ORDER)


def face_passes(face: FaceQualityResult, min_quality: Optional[str] = None, min_score: Optional[float] = None) -> bool:
    """Whether a face reaches class ``min_quality`` and quality value ``min_score`` (``None``: no condition).

    :raises ValueError: When ``min_quality`` is not a class of the model that scored the face.
    """
    if min_quality is not None:
        ranks = quality_ranks(_classes(face))
        if min_quality not in ranks:
            raise ValueError(f'min_quality {min_quality!r} is not a class of the model that scored these faces; '
                             f'classes: {", ".join(ranks)}.')
        if ranks[face.label] < ranks[min_quality]:
            return False
    return min_score is None or (face.quality is not None and face.quality >= min_score)


def image_passes(faces: Sequence[FaceQualityResult], min_quality: Optional[str] = None,
                 min_score: Optional[float] = None, every_face: bool = False) -> bool:
    """Whether an image with these faces passes: its best face (or, with ``every_face``, every face)
    reaches the thresholds. An image without a face never passes."""
    if not faces:
        return False
    checks = (face_passes(face, min_quality, min_score) for face in faces)
    return all(checks) if every_face else any(checks)


def kept_images(rows, min_quality: Optional[str] = None, min_score: Optional[float] = None,
                every_face: bool = False) -> List[str]:
    """The images (paths as in the rows) that a threshold keeps, in file order.

    Example:

        >>> from imgutils_facequal import kept_images
        >>> from imgutils_facequal.rows import read_rows
        >>> kept_images(read_rows('scores.jsonl'), min_quality='good')  # doctest: +SKIP
        ['frames/0001.png', 'frames/0007.png']
    """
    return [result.image.path for result in scored_images(rows)
            if result.error is None and image_passes(result.faces, min_quality, min_score, every_face)]


def kept_faces(rows, min_quality: Optional[str] = None, min_score: Optional[float] = None) -> List[dict]:
    """The face rows that reach a threshold (what ``crop --min-quality`` writes), in file order."""
    kept = []
    for row in _records(rows):
        if row.get('error') or row.get('label') is None:
            continue
        if face_passes(_face(row), min_quality, min_score):
            kept.append(row)
    return kept


class ThresholdRow(NamedTuple):
    """What one threshold keeps.

    :ivar option: ``min_quality`` or ``min_score``.
    :ivar value: The class, or the quality value.
    :ivar images: Images whose best face reaches it.
    :ivar images_every_face: Images whose every face reaches it.
    :ivar faces: Faces that reach it.
    """
    option: str
    value: Any
    images: int
    images_every_face: int
    faces: int


@dataclass
class ThresholdTable:
    """How many images and faces each threshold keeps (see `threshold_table`).

    :ivar images: Images in the rows, failed ones included.
    :ivar with_faces: Images with at least one face.
    :ivar faces: Faces in the rows.
    :ivar failed: Images that could not be read when they were scored.
    :ivar per_class: Faces per top class, worst class first.
    :ivar rows: One `ThresholdRow` per class (worst first), then one per ``min_score`` step.
    """
    images: int
    with_faces: int
    faces: int
    failed: int
    per_class: Dict[str, int]
    rows: List[ThresholdRow] = field(default_factory=list)

    def to_text(self) -> str:
        """The table as aligned plain text, as ``filter --thresholds`` prints it."""
        lines = [f'{self.images} images ({self.with_faces} with faces, {self.failed} failed), {self.faces} faces',
                 '  faces per class: ' + (', '.join(f'{name} {count}' for name, count in self.per_class.items())
                                          or 'none'),
                 '', f'{"threshold":<24} {"images":>8} {"every face":>11} {"faces":>8}']
        for row in self.rows:
            value = row.value if row.option == 'min_quality' else f'{row.value:.2f}'
            lines.append(f'{"--" + row.option.replace("_", "-") + " " + str(value):<24} {row.images:>8} '
                         f'{row.images_every_face:>11} {row.faces:>8}')
        return '\n'.join(lines)


def threshold_table(rows, min_scores: Sequence[float] = DEFAULT_SCORE_STEPS) -> ThresholdTable:
    """How many images (by their best face, and by every face) and how many faces each
    ``min_quality`` class and each ``min_score`` step keeps, from saved rows alone.

    Example:

        >>> from imgutils_facequal import threshold_table
        >>> from imgutils_facequal.rows import read_rows
        >>> print(threshold_table(read_rows('scores.jsonl')).to_text())  # doctest: +SKIP
        9 images (8 with faces, 0 failed), 20 faces
          faces per class: poor 5, ok 5, good 5, excellent 5
        <BLANKLINE>
        threshold                  images  every face    faces
        --min-quality poor              8           8       20
        ...
    """
    return table_of(scored_images(rows), min_scores)


def table_of(results: Sequence[ImageResult], min_scores: Sequence[float] = DEFAULT_SCORE_STEPS) -> ThresholdTable:
    """`threshold_table` of results (from the pipeline, or `scored_images`)."""
    faces = [face for result in results for face in result.faces]
    classes: List[str] = []
    for face in faces:
        for name in _classes(face):
            if name not in classes:
                classes.append(name)
    ranks = quality_ranks(classes or list(QUALITY_ORDER))
    ordered = sorted(ranks, key=ranks.get)
    per_image = [(max(ranks[f.label] for f in r.faces), min(ranks[f.label] for f in r.faces),
                  max(f.quality for f in r.faces), min(f.quality for f in r.faces))
                 for r in results if r.error is None and r.faces]
    face_ranks = [ranks[face.label] for face in faces]
    face_values = [face.quality for face in faces]
    per_class = {name: sum(1 for rank in face_ranks if rank == ranks[name]) for name in ordered}
    table = ThresholdTable(images=len(results), with_faces=len(per_image), faces=len(faces),
                           failed=sum(1 for r in results if r.error is not None), per_class=per_class)
    for name in ordered:
        rank = ranks[name]
        table.rows.append(ThresholdRow('min_quality', name, sum(1 for best, *_ in per_image if best >= rank),
                                       sum(1 for _, worst, *_ in per_image if worst >= rank),
                                       sum(1 for value in face_ranks if value >= rank)))
    for step in min_scores:
        table.rows.append(ThresholdRow('min_score', float(step), sum(1 for *_, best, _ in per_image if best >= step),
                                       sum(1 for *_, worst in per_image if worst >= step),
                                       sum(1 for value in face_values if value >= step)))
    return table


# ------------------------------------------------------------------------------------------- names


def _image_stems(directory: str) -> Dict[str, int]:
    """How many image files of a folder share each stem (cached for the folder being walked)."""
    if directory in _stem_cache:
        return _stem_cache[directory]
    counts: Dict[str, int] = defaultdict(int)
    try:
        names = os.listdir(directory or '.')
    except OSError:
        names = []
    for name in names:
        stem, ext = os.path.splitext(name)
        if ext.lower() in IMAGE_EXTENSIONS:
            counts[stem] += 1
    if len(_stem_cache) > 8:
        _stem_cache.clear()
    _stem_cache[directory] = counts
    return counts


_stem_cache: Dict[str, Dict[str, int]] = {}


def output_stem(image: InputImage) -> str:
    """The relative name, without extension, of the files made from one image.

    It is the image's relative path without its extension (``ep1/x`` for ``ep1/x.png``),
    unless another image with the same stem sits beside it (``x.png`` and ``x.jpg``): then
    the extension stays (``ep1/x.png``, ``ep1/x.jpg``), so the two never share an output.
    """
    relative = image.relative_path
    stem = os.path.splitext(relative)[0]
    if _image_stems(os.path.dirname(image.path)).get(os.path.basename(stem), 0) > 1:
        return relative
    return stem


def _unique(images: Sequence[InputImage], name: Callable[[InputImage], str], strip_ext: bool) -> Dict[str, str]:
    """``name`` of every image, then names that several images share made unique: by the
    extension (``x.png``, ``x.jpg``), then by the path from the folder above the roots
    (``a/x``, ``b/x``), then (never expected) by a number."""
    names = {image.path: name(image) for image in images}

    def keyed():
        groups: Dict[str, List[InputImage]] = defaultdict(list)
        for image in images:
            groups[os.path.normcase(names[image.path])].append(image)
        return [group for group in groups.values() if len(group) > 1]

    for _ in range(3):
        clashes = keyed()
        if not clashes:
            return names
        for group in clashes:
            extensions = {os.path.splitext(image.path)[1] for image in group}
            if strip_ext and len(extensions) == len(group):  # x.png and x.jpg: keep the extension
                for image in group:
                    names[image.path] += os.path.splitext(image.path)[1]
                continue
            # the same relative path under two roots: the path from the folder above them
            root = os.path.commonpath([os.path.dirname(os.path.abspath(image.path)) for image in group])
            for image in group:
                relative = os.path.relpath(os.path.abspath(image.path), root)
                had_ext = not strip_ext or names[image.path].endswith(os.path.splitext(image.path)[1])
                names[image.path] = relative if had_ext else os.path.splitext(relative)[0]
    seen: Dict[str, int] = defaultdict(int)
    for image in sorted(images, key=lambda image: (image.path, image.root)):
        key = os.path.normcase(names[image.path])
        seen[key] += 1
        if seen[key] > 1:
            stem, ext = (names[image.path], '') if strip_ext else os.path.splitext(names[image.path])
            names[image.path] = f'{stem}~{seen[key]}{ext}'
    return names


def output_stems(images: Sequence[InputImage]) -> Dict[str, str]:
    """`output_stem` of every image, made unique across the set: ``a/x.png`` and ``b/x.png``
    given as two roots become ``a/x`` and ``b/x``. Keyed by image path; the same for the same
    set of inputs, so a rerun names every output the same."""
    return _unique(images, output_stem, strip_ext=True)


def output_paths(images: Sequence[InputImage]) -> Dict[str, str]:
    """Relative paths under an output folder, one per image, unique across the set (see `output_stems`)."""
    return _unique(images, lambda image: image.relative_path, strip_ext=False)


# ------------------------------------------------------------------------------------ file placement


def _identical(first: str, second: str) -> bool:
    try:
        return os.path.samefile(first, second) or filecmp.cmp(first, second, shallow=False)
    except OSError:
        return False


def _publish(temp: str, target: str) -> None:
    """Give the finished file ``temp`` the name ``target``, never replacing a file there."""
    try:
        os.link(temp, target)
    except FileExistsError:
        raise
    except OSError as err:
        if err.errno not in _NO_LINKS:
            raise
        # no hard links here: claim the name exclusively, then replace only that claim
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        os.replace(temp, target)
        return
    os.unlink(temp)


def _temp_beside(target: str) -> str:
    directory = os.path.dirname(target) or '.'
    # a name of its own, hidden, and short enough for any file name the target can have
    handle, temp = tempfile.mkstemp(prefix=f'.{os.path.basename(target)[:100]}.', suffix='.partial', dir=directory)
    os.close(handle)
    return temp


def write_new_file(target: str, write: Callable[[str], None], durable: bool = False) -> str:
    """Create ``target`` with ``write(path)``, which writes the whole file to ``path``.

    ``write`` writes to a temporary name in the target's folder; only a finished file gets
    the real name, and only if no file has it. If ``target`` exists with the same bytes,
    nothing changes.

    :param durable: Flush the file to disk before it gets its name (when the caller will
        delete the only other copy).
    :return: ``'placed'``, or ``'present'`` when ``target`` already held the same bytes.
    :raises FileExistsError: When ``target`` exists with other bytes; it is left as it was.
    :raises OSError: When writing fails (a full disk); nothing is left behind.
    """
    os.makedirs(os.path.dirname(target) or '.', exist_ok=True)
    temp = _temp_beside(target)
    try:
        write(temp)
        if durable:
            with open(temp, 'rb+') as file:
                os.fsync(file.fileno())
        try:
            _publish(temp, target)
        except FileExistsError:
            if _identical(temp, target):
                return 'present'
            raise FileExistsError(errno.EEXIST, f'{target} exists with other content; not overwriting it '
                                                f'(move it away, or choose another output folder)', target) from None
        return 'placed'
    finally:
        if os.path.lexists(temp):
            os.unlink(temp)


def _copy(source: str):
    def write(temp: str) -> None:
        shutil.copyfile(source, temp)
        shutil.copystat(source, temp)
    return write


def place_file(source: str, target: str, mode: str = 'copy') -> str:
    """Copy, hard-link or move ``source`` to ``target``, never replacing a file and never
    leaving a partial one.

    * ``copy``: written under a temporary name in the target's folder, then given its name
      with a hard link, which fails if the name is taken (so two processes cannot
      overwrite each other); a failed copy (a full disk) is removed.
    * ``hardlink``: ``os.link``, which never replaces a file.
    * ``move``: a hard link, then the source is removed; across filesystems (or where
      there are no hard links) a durable copy as above, then the source is removed.

    :return: ``'placed'``, or ``'present'`` when ``target`` already is this file or holds
        the same bytes (a rerun); then a moved source is left where it is, unless the
        target is the same file (a move cut short between link and unlink).
    :raises FileExistsError: When ``target`` exists with other content; both stay as they are.
    :raises OSError: When the source cannot be read or the target cannot be written.
    """
    if mode not in MODES:
        raise ValueError(f'mode must be one of {", ".join(MODES)}; got {mode!r}.')
    if mode == 'copy':
        return write_new_file(target, _copy(source))
    os.makedirs(os.path.dirname(target) or '.', exist_ok=True)
    try:
        os.link(source, target)
    except FileExistsError:
        if not _identical(source, target):
            raise FileExistsError(errno.EEXIST, f'{target} exists with other content than {source}; not overwriting '
                                                f'it (move it away, or choose another output folder)',
                                  target) from None
        if mode == 'move' and os.path.samefile(source, target):
            os.unlink(source)
        return 'present'
    except OSError as err:
        if err.errno not in _NO_LINKS:
            raise
        if mode == 'hardlink':
            raise OSError(err.errno, f'cannot hard-link {source} to {target}: {err.strerror} '
                                     f'(hard links need one filesystem; use --mode copy)', source) from None
        outcome = write_new_file(target, _copy(source), durable=True)
        if outcome == 'placed':
            os.unlink(source)
        return outcome
    if mode == 'move':
        os.unlink(source)
    return 'placed'


def _sidecar_name(pattern: str, stem: str) -> str:
    return pattern.format(stem=stem) if '{stem}' in pattern else stem + pattern


def find_sidecars(image: str, sidecars: Sequence[str] = DEFAULT_SIDECARS) -> List[Tuple[str, str]]:
    """The sidecar files of an image that exist, as ``(path, pattern)`` pairs.

    ``x.png`` has ``x.txt``, ``x.caption``, ``x.json``, ``x.npz`` and waifuc's
    ``.x_meta.json`` by default (see `DEFAULT_SIDECARS`).
    """
    directory, name = os.path.split(image)
    stem = os.path.splitext(name)[0]
    found = []
    for pattern in sidecars:
        path = os.path.join(directory, _sidecar_name(pattern, stem))
        if path != image and os.path.isfile(path):
            found.append((path, pattern))
    return found


def write_manifest(path: str, lines: Iterable[str]) -> None:
    """Write one path per line to ``path`` at once (a temporary file renamed over it when complete)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f'.{os.path.basename(path)}.', suffix='.partial', dir=directory)
    try:
        with os.fdopen(handle, 'w', encoding='utf-8', newline='\n', errors='surrogateescape') as file:
            file.writelines(f'{line}\n' for line in lines)
        os.replace(temp, path)
    finally:
        if os.path.lexists(temp):
            os.unlink(temp)


# ------------------------------------------------------------------------------------------ filter


def _reason(err: OSError, source: str, target: str) -> str:
    return str(err) if isinstance(err, FileExistsError) else f'{err.strerror or err} ({source} -> {target})'


class Outcome(NamedTuple):
    """What `FolderFilter.add` did with one image."""
    image: str
    kept: bool
    action: str  # placed, present, left, missing, failed, would
    target: Optional[str] = None
    message: Optional[str] = None  # why it failed or is missing; for placed or present, what did not follow


@dataclass
class FilterSummary:
    """What a filter did.

    :ivar kept: Targets of the images kept (placed now, or there already from an earlier run).
    :ivar rejected: Targets of the images put in the ``rejected`` folder.
    :ivar present: Of those, images whose target already held the same file (a rerun).
    :ivar missing: Images in the rows that no longer exist (and are not at their target).
    :ivar failed: ``(image, reason)``: unreadable when scored, or a file operation that failed.
    :ivar images: Images looked at.
    """
    kept: List[str] = field(default_factory=list)
    rejected: List[str] = field(default_factory=list)
    present: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    failed: List[Tuple[str, str]] = field(default_factory=list)
    images: int = 0


class FolderFilter:
    """Puts the images that pass a threshold, with their sidecars, in a folder; the others,
    if ``rejected`` is given, in another; never overwrites, never leaves a partial file.

    :param images: Every image of the run (for names no two share, see `output_paths`).
    :param out_dir: Folder for the kept images; relative folders are kept.
    :param mode: ``copy``, ``hardlink`` or ``move`` (see `place_file`).
    :param sidecars: Sidecar patterns that travel with each image (see `find_sidecars`).
    :param rejected: Folder for the images that do not pass (``None``: they stay).
    :param dry_run: Decide, but change nothing.

    Feed it one `imgutils_facequal.ImageResult` at a time with `add` (from the pipeline or
    from `scored_images`); `summary` says what was done.
    """

    def __init__(self, images: Sequence[InputImage], out_dir: str, min_quality: Optional[str] = None,
                 min_score: Optional[float] = None, every_face: bool = False, mode: str = 'copy',
                 sidecars: Sequence[str] = DEFAULT_SIDECARS, rejected: Optional[str] = None, dry_run: bool = False):
        if mode not in MODES:
            raise ValueError(f'mode must be one of {", ".join(MODES)}; got {mode!r}.')
        if min_quality is None and min_score is None:
            raise ValueError('Give min_quality or min_score (or both).')
        self.names = output_paths(images)
        self.out_dir, self.rejected_dir = out_dir, rejected
        self.min_quality, self.min_score, self.every_face = min_quality, min_score, every_face
        self.mode, self.sidecars, self.dry_run = mode, tuple(sidecars), dry_run
        self.summary = FilterSummary()

    def _place(self, source: str, target: str) -> Tuple[str, List[str]]:
        """Place an image, then its sidecars; ``(outcome, problems with sidecars)``."""
        outcome = place_file(source, target, self.mode)
        if outcome == 'present' and self.mode == 'move' and os.path.exists(source):
            return outcome, []  # the image stays where it is: so do its sidecars
        target_stem = os.path.splitext(os.path.basename(target))[0]
        problems = []
        for path, pattern in find_sidecars(source, self.sidecars):
            sidecar = os.path.join(os.path.dirname(target), _sidecar_name(pattern, target_stem))
            try:
                place_file(path, sidecar, self.mode)
            except OSError as err:
                problems.append(f'its sidecar {path} was not placed: {_reason(err, path, sidecar)}')
        return outcome, problems

    def add(self, result: ImageResult) -> Outcome:
        """Decide about one image and put it where it goes; returns what was done."""
        path = result.image.path
        summary = self.summary
        summary.images += 1
        if result.error is not None:
            summary.failed.append((path, result.error))
            return Outcome(path, False, 'failed', message=result.error)
        kept = image_passes(result.faces, self.min_quality, self.min_score, self.every_face)
        folder = self.out_dir if kept else self.rejected_dir
        if folder is None:
            return Outcome(path, False, 'left')
        target = os.path.join(folder, self.names.get(path, result.image.relative_path))
        listed = summary.kept if kept else summary.rejected
        if not os.path.lexists(path):
            if os.path.exists(target):  # moved there by an earlier run
                listed.append(target)
                summary.present.append(target)
                return Outcome(path, kept, 'present', target)
            summary.missing.append(path)
            return Outcome(path, kept, 'missing', target, f'{path} no longer exists')
        if self.dry_run:
            listed.append(target)
            return Outcome(path, kept, 'would', target)
        try:
            action, problems = self._place(path, target)
        except OSError as err:
            reason = _reason(err, path, target)
            summary.failed.append((path, reason))
            return Outcome(path, kept, 'failed', target, reason)
        listed.append(target)
        if action == 'present':
            summary.present.append(target)
        if problems:  # the image is in place; what did not follow it is reported
            summary.failed.append((path, '; '.join(problems)))
            return Outcome(path, kept, action, target, f'{path} went to {target}, but ' + '; '.join(problems))
        return Outcome(path, kept, action, target)


def filter_images(rows, out_dir: str, min_quality: Optional[str] = None, min_score: Optional[float] = None,
                  every_face: bool = False, mode: str = 'copy', sidecars: Sequence[str] = DEFAULT_SIDECARS,
                  rejected: Optional[str] = None, manifest: Optional[str] = None, dry_run: bool = False,
                  root: Optional[str] = None) -> FilterSummary:
    """Copy, hard-link or move the images of saved rows that pass a threshold to ``out_dir``,
    with their sidecars; loads no model.

    :param rows: Nested rows (`imgutils_facequal.rows.read_rows`) or a DataFrame of them.
    :param root: Folder the paths under ``out_dir`` are relative to (default: the deepest
        folder holding every image, `common_root`).
    :param manifest: Also write the kept images' paths under ``out_dir`` to this file.

    The other arguments are those of `FolderFilter`. Images in the rows that no longer
    exist are listed in ``missing``; a file that cannot be placed, in ``failed``; the rest
    go on.

    Example:

        >>> from imgutils_facequal import filter_images
        >>> from imgutils_facequal.rows import read_rows
        >>> summary = filter_images(read_rows('scores.jsonl'), 'train/', min_quality='good')  # doctest: +SKIP
        >>> len(summary.kept), summary.missing, summary.failed  # doctest: +SKIP
        (412, [], [])
    """
    results = scored_images(rows, root)
    sorter = FolderFilter([result.image for result in results], out_dir, min_quality, min_score, every_face, mode,
                          sidecars, rejected, dry_run)
    for result in results:
        sorter.add(result)
    if manifest and not dry_run:
        write_manifest(manifest, sorter.summary.kept)
    return sorter.summary


def rows_of(results: Iterable[ImageResult]) -> List[dict]:
    """The nested rows of results (as ``score`` writes them)."""
    return [row for result in results for row in result_rows(result)]


# -------------------------------------------------------------------------------------- provenance

# options of a run that change its rows, as named in `imgutils_facequal.rows.provenance`
_DETECTOR_OPTIONS = ('conf_threshold', 'iou_threshold', 'level', 'version', 'model_name')


def provenance_mismatches(recorded: Dict[str, Any], **given: Any) -> List[str]:
    """What differs between the provenance of saved scores and the settings ``given``.

    :param recorded: The provenance (`imgutils_facequal.rows.read_provenance`).
    :param given: Settings by their `imgutils_facequal.load_face_quality_detector` names
        (``model_name``, ``revision``, ``backend``, ``precision``, ``detector``, ``crop``,
        ``margin``, ``head_detector``, ``conf_threshold``, ``iou_threshold``, ``level``,
        ``version``, ``detector_model_name``, ``head_localisation``, ``head_level``, ``head_version``,
        ``head_infer_size``); others are ignored.
    :return: One line per setting that differs, ``[]`` when all agree.
    """
    problems = []
    for name, value in given.items():
        if name == 'model_name':
            names = {recorded.get('model'), recorded.get('repo_id'), recorded.get('local_dir')}
            if value not in names:
                try:
                    source = resolve_model(value)
                    same = (source.repo_id, source.local_dir) == (recorded.get('repo_id'), recorded.get('local_dir'))
                except (ValueError, LookupError, OSError):
                    same = False
                if not same:
                    problems.append(f'model: {value!r} given, the scores are from {recorded.get("model")!r} '
                                    f'({recorded.get("local_dir") or recorded.get("repo_id")})')
        elif name == 'revision':
            if value not in (recorded.get('revision'), recorded.get('commit')):
                problems.append(f'revision: {value!r} given, the scores are from {recorded.get("revision")!r} '
                                f'(commit {recorded.get("commit")})')
        elif name == 'backend':
            if value != 'auto' and value != recorded.get('backend'):
                problems.append(f'backend: {value!r} given, the scores are from {recorded.get("backend")!r}')
        elif name in ('head_level', 'head_version', 'head_infer_size'):
            key, options = name[len('head_'):], recorded.get('head_detector_options') or {}
            if value != options.get(key):
                problems.append(f'head detector {key}: {value!r} given, the scores are from '
                                f'{options.get(key, "the detector default")!r}')
        elif name in ('precision', 'detector', 'crop', 'head_detector', 'head_localisation'):
            if value != recorded.get(name):
                problems.append(f'{name}: {value!r} given, the scores are from {recorded.get(name)!r}')
        elif name == 'margin':
            if recorded.get('margin') is None or abs(float(value) - float(recorded['margin'])) > 1e-9:
                problems.append(f'margin: {value!r} given, the scores are from {recorded.get("margin")!r}')
        elif name in _DETECTOR_OPTIONS or name == 'detector_model_name':
            key = 'model_name' if name == 'detector_model_name' else name
            options = recorded.get('detector_options') or {}
            if value != options.get(key):
                problems.append(f'detector {key}: {value!r} given, the scores are from '
                                f'{options.get(key, "the detector default")!r}')
    return problems
