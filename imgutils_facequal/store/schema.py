"""The rows of saved scores, and the conversions between rows and results.

An image gives one row per face, one row with ``faces`` 0 when it has no face, or one
error row (``faces`` empty, ``error`` set) when it cannot be read. Every row carries
``faces``, the number of faces of its image, so a reader can tell a complete image from
one cut short (`imgutils_facequal.store.complete`).

* Nested rows (`result_rows`), as JSON Lines holds them: ``bbox``, ``crop_bbox`` and
  ``head_bbox`` are lists, ``scores`` is ``{class: probability}``.
* Flat rows (`flat_row`, `flat_columns`), as CSV and Parquet hold them: the boxes as
  ``x0 .. y1``, ``crop_x0 .. crop_y1`` and ``head_x0 .. head_y1``, one ``p_<class>`` column
  per class, no list columns. In Parquet the integers are int32 and the floats float32
  (`arrow_schema`).
* Per-image rows (``score --per-image``): `PER_IMAGE_COLUMNS`.

Every image row may carry ``phash``, the image's perceptual hash (16 hex digits, see
`imgutils_facequal.pipeline.perceptual_hash`) for finding near-duplicates; nested rows
have it only when it is known, flat rows always have the column (empty when unknown).

`scored_images` turns rows (or a pandas DataFrame of them) back into one
`imgutils_facequal.ImageResult` per image, and `rows_of` results into rows.

`check_row` is the one check of a row read from a file, for every format: what a hand
edit or a foreign file gets wrong is refused there, naming the field (the readers add
the file and the line). Columns it does not know are left alone.
"""
import json
import math
import numbers
from collections import OrderedDict
from typing import Any, Dict, Iterable, List, Optional, Sequence

from ..pipeline import ImageResult, InputImage
from ..scoring import FaceQualityResult
from .paths import common_root, local_path, stored_path, text_path

__all__ = ['PER_IMAGE_COLUMNS', 'PROVENANCE_KEY', 'result_rows', 'per_image_rows', 'per_image_row', 'flat_columns',
           'flat_row', 'nested_row', 'arrow_schema', 'rows_table', 'records', 'face_result', 'scored_images', 'rows_of',
           'classes_of_columns', 'check_row', 'checked_rows']

#: The key of the provenance in Parquet metadata.
PROVENANCE_KEY = b'imgutils_facequal'
#: The columns of a per-image summary, in order.
PER_IMAGE_COLUMNS = ('image', 'faces', 'width', 'height', 'best_quality', 'worst_quality', 'mean_quality',
                     'best_label', 'error')

_BOX = ('x0', 'y0', 'x1', 'y1')
_INT_FIELDS = ('face', 'faces', 'width', 'height')


def _one_line(text: str) -> str:
    return ' '.join(str(text).split())


def _phash(result: ImageResult) -> dict:
    phash = getattr(result, 'phash', None)
    return {} if phash is None else {'phash': phash}


def result_rows(result: ImageResult) -> List[dict]:
    """One nested row per face; one row for an image with no face; one error row for a failed image."""
    path = stored_path(result.image.path)
    if result.error is not None:
        return [{'image': path, 'face': None, 'faces': None, 'error': _one_line(result.error)}]
    if not result.faces:
        return [{'image': path, 'face': None, 'faces': 0, 'width': result.size[0], 'height': result.size[1],
                 **_phash(result), 'error': None}]
    rows = []
    for index, face in enumerate(result.faces):
        rows.append({
            'image': path, 'face': index, 'faces': len(result.faces),
            'width': result.size[0], 'height': result.size[1], **_phash(result),
            'bbox': [int(v) for v in face.bbox], 'label': face.label, 'score': face.score,
            'scores': face.scores, 'quality': face.quality, 'detection_score': face.detection_score,
            'head_bbox': None if face.head_bbox is None else [round(float(v), 2) for v in face.head_bbox],
            'crop_bbox': [int(v) for v in face.crop_bbox], 'error': None,
        })
    return rows


def per_image_rows(result: ImageResult) -> List[dict]:
    """One row for the image: its faces, and the best, worst and mean quality of them (``None`` without faces).

    The best face's class is ``best_label``; an unreadable image gives its error instead.
    """
    path = stored_path(result.image.path)
    if result.error is not None:
        return [{'image': path, 'faces': None, 'error': _one_line(result.error)}]
    qualities = [face.quality for face in result.faces]
    best = max(result.faces, key=lambda face: face.quality, default=None)
    return [{'image': path, 'faces': len(result.faces), 'width': result.size[0], 'height': result.size[1],
             'best_quality': max(qualities, default=None), 'worst_quality': min(qualities, default=None),
             'mean_quality': sum(qualities) / len(qualities) if qualities else None,
             'best_label': None if best is None else best.label, 'error': None}]


def _number(value, kind, name='value'):
    if value is None or value == '':
        return None
    try:
        return kind(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f'{name} is {value!r}, not {"a whole number" if kind is int else "a number"}') from None


def per_image_row(flat: Dict[str, Any]) -> dict:
    """A per-image row read back from CSV text or Parquet: numbers as numbers, empty as ``None``."""
    row = {name: (None if flat.get(name) in (None, '') else flat.get(name)) for name in PER_IMAGE_COLUMNS}
    for name, kind in (('faces', int), ('width', int), ('height', int), ('best_quality', float),
                       ('worst_quality', float), ('mean_quality', float)):
        row[name] = _number(row[name], kind, name)
    return row


def flat_columns(classes: Sequence[str], with_head: bool = False) -> List[str]:
    """The flat columns, in order; ``with_head`` adds the head box (Parquet has it, CSV does not)."""
    return (['image', 'face', 'faces', 'width', 'height', 'phash', *_BOX, 'label', 'score', 'quality',
             'detection_score']
            + [f'p_{name}' for name in classes] + [f'crop_{name}' for name in _BOX]
            + ([f'head_{name}' for name in _BOX] if with_head else []) + ['error'])


def classes_of_columns(columns: Iterable[str]) -> List[str]:
    """The classes of flat columns (``p_poor`` → ``poor``), in column order."""
    return [name[2:] for name in columns if name.startswith('p_')]


def flat_row(row: dict, classes: Sequence[str], with_head: bool = False) -> Dict[str, Any]:
    """A nested row as flat columns (``None`` where a row has no value)."""
    flat = {name: row.get(name) for name in ('image', 'face', 'faces', 'width', 'height', 'phash', 'label', 'score',
                                              'quality', 'detection_score', 'error')}
    for prefix, key in (('', 'bbox'), ('crop_', 'crop_bbox'), ('head_', 'head_bbox')):
        box = row.get(key) or [None] * 4
        flat.update({f'{prefix}{name}': value for name, value in zip(_BOX, box)})
    scores = row.get('scores') or {}
    flat.update({f'p_{name}': scores.get(name) for name in classes})
    return {name: flat[name] for name in flat_columns(classes, with_head)}


def nested_row(flat: Dict[str, Any], classes: Optional[Sequence[str]] = None) -> dict:
    """A flat row (from CSV text or Parquet) as the nested row `result_rows` gives."""
    classes = classes if classes is not None else classes_of_columns(flat)
    faces = _number(flat.get('faces'), int, 'faces')
    row = {'image': flat['image'], 'face': _number(flat.get('face'), int, 'face'), 'faces': faces}
    error = flat.get('error')
    if error not in (None, ''):
        row['error'] = error
        return row
    row.update(width=_number(flat.get('width'), int, 'width'), height=_number(flat.get('height'), int, 'height'))
    if flat.get('phash') not in (None, ''):
        row['phash'] = flat['phash']
    if not faces:
        row['error'] = None
        return row

    def box(prefix, kind):
        values = [_number(flat.get(f'{prefix}{name}'), kind, f'{prefix}{name}') for name in _BOX]
        return None if any(value is None for value in values) else values

    row.update(bbox=box('', int), label=flat.get('label'), score=_number(flat.get('score'), float, 'score'),
               scores={name: _number(flat.get(f'p_{name}'), float, f'p_{name}') for name in classes},
               quality=_number(flat.get('quality'), float, 'quality'),
               detection_score=_number(flat.get('detection_score'), float, 'detection_score'),
               head_bbox=box('head_', float), crop_bbox=box('crop_', int), error=None)
    return row


# ----------------------------------------------------------------------------- checking rows read back


def _is_number(value) -> bool:
    if type(value) in (int, float):  # the common case, without the slower abstract check
        return math.isfinite(value)
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _is_count(value) -> bool:
    return _is_number(value) and float(value).is_integer() and value >= 0


def _describe(value) -> str:
    kind = {dict: 'a struct', list: 'a list', str: 'text'}.get(type(value), type(value).__name__)
    return kind if isinstance(value, dict) or len(repr(value)) > 60 else f'{kind} {value!r}'


def _check_pixels(width, height) -> None:
    """No image scored can be larger than Pillow opens (twice its decompression-bomb limit)."""
    if width * height <= 2 * 89478485:  # Pillow's default limit: no need to ask it
        return
    from PIL import Image
    if Image.MAX_IMAGE_PIXELS and width * height > 2 * Image.MAX_IMAGE_PIXELS:
        raise ValueError(f'width and height are {width} x {height}, more pixels than any image Pillow opens')


def _check_box(row: dict, name: str, required: bool, whole: bool = False) -> None:
    box = row.get(name)
    if box is None:
        if required:
            raise ValueError(f'{name} is missing (null)')
        return
    if not isinstance(box, (list, tuple)) or len(box) != 4 or not all(_is_number(value) for value in box):
        raise ValueError(f'{name} is {_describe(box)}, not four numbers x0, y0, x1, y1')
    x0, y0, x1, y1 = box
    if whole and not all(float(value).is_integer() for value in box):
        raise ValueError(f'{name} is {list(box)!r}, not four whole numbers')
    if x1 < x0 or y1 < y0 or whole and (x1 == x0 or y1 == y0):
        raise ValueError(f'{name} is {list(box)!r}: x1 must be right of x0 and y1 below y0')
    width, height = row.get('width'), row.get('height')
    if whole and _is_number(width) and _is_number(height) and (x0 < 0 or y0 < 0 or x1 > width or y1 > height):
        raise ValueError(f'{name} is {list(box)!r}, outside the image of {width} x {height} pixels')


def _check_class(row: dict, name: str, classes: Optional[Sequence[str]]) -> None:
    label = row.get(name)
    if not isinstance(label, str):
        raise ValueError(f'{name} is {_describe(label)}, not a class name')
    if classes and label not in classes:
        raise ValueError(f'{name} is {label!r}, not one of the classes {", ".join(classes)}')


def check_row(row: dict, classes: Optional[Sequence[str]] = None) -> None:
    """Check a row read back (nested, or per image) against the schema; the one check of every reader.

    :param classes: The model's classes, where the file says (its ``p_`` columns); default the
        keys of the row's ``scores``.
    :raises ValueError: ``<field> is <value>, not ...``: what is wrong, naming the field.

    >>> check_row({'image': 'a.png', 'face': 0, 'faces': 1, 'label': 'good', 'scores': {'good': 0.9},
    ...            'score': 0.9, 'quality': 'high', 'bbox': [0, 0, 9, 9], 'crop_bbox': [0, 0, 9, 9]})
    Traceback (most recent call last):
    ...
    ValueError: quality is text 'high', not a number
    """
    if not isinstance(row, dict):
        raise ValueError(f'the row is {_describe(row)}, not an object of fields')
    image = row.get('image')
    if not isinstance(image, str) or not image:
        hint = ' (an image column of a Hugging Face dataset? score it with score --ray or read_hf_parquet)' \
            if isinstance(image, dict) else ''
        raise ValueError(f'image is {_describe(image)}, not the name of an image{hint}')
    error = row.get('error')
    if error is not None and not isinstance(error, str):
        raise ValueError(f'error is {_describe(error)}, not text')
    faces = row.get('faces')
    if faces is not None and not _is_count(faces):
        raise ValueError(f'faces is {_describe(faces)}, not a count of faces')
    if error:
        return
    if faces is None:
        raise ValueError('faces is missing (null) in a row without an error')
    for name in ('width', 'height'):
        if row.get(name) is not None and not _is_count(row[name]):
            raise ValueError(f'{name} is {_describe(row[name])}, not a size in pixels')
    if row.get('width') is not None and row.get('height') is not None:
        _check_pixels(row['width'], row['height'])
    if 'face' not in row:  # a per-image row (score --per-image)
        for name in ('best_quality', 'worst_quality', 'mean_quality'):
            if row.get(name) is not None and not _is_number(row[name]):
                raise ValueError(f'{name} is {_describe(row[name])}, not a number')
        if row.get('best_label') is not None:
            _check_class(row, 'best_label', classes)
        return
    if faces == 0:
        return
    face = row.get('face')
    if not _is_count(face) or face >= faces:
        raise ValueError(f'face is {_describe(face)}, not the index of one of the image\'s {faces} faces')
    scores = row.get('scores')
    if scores is not None and not (isinstance(scores, dict) and all(
            isinstance(name, str) and (value is None or _is_number(value)) for name, value in scores.items())):
        raise ValueError(f'scores is {_describe(scores)}, not {{class: probability}}')
    known = list(classes or ()) or [name for name, value in (scores or {}).items() if value is not None]
    _check_class(row, 'label', known)
    for name in ('quality', 'score'):
        if not _is_number(row.get(name)):
            raise ValueError(f'{name} is {_describe(row.get(name))}, not a number')
    if row.get('detection_score') is not None and not _is_number(row['detection_score']):
        raise ValueError(f'detection_score is {_describe(row["detection_score"])}, not a number')
    _check_box(row, 'bbox', required=False)
    _check_box(row, 'head_bbox', required=False)
    _check_box(row, 'crop_bbox', required=True, whole=True)


def checked_rows(path: str, numbered: Iterable, classes: Optional[Sequence[str]] = None,
                 unit: str = 'line') -> List[dict]:
    """The rows of ``(number, row)`` pairs, each checked (`check_row`).

    :raises ValueError: Naming the file, the line (or ``unit``) and the field.
    """
    rows = []
    for number, row in numbered:
        try:
            check_row(row, classes)
        except ValueError as err:
            raise ValueError(f'{path!r} {unit} {number}: {err}. Correct or remove that row (it is no row '
                             f'imgutils-facequal writes), or score the images again.') from None
        rows.append(row)
    return rows


def _metadata(provenance: Optional[dict]):
    return None if provenance is None else {PROVENANCE_KEY: json.dumps(provenance).encode('utf-8')}


def arrow_schema(classes: Sequence[str], provenance: Optional[dict] = None, per_image: bool = False):
    """The Parquet schema: int32 counts, sizes and boxes, float32 values, strings for names, labels and errors;
    the provenance in its metadata."""
    import pyarrow as pa
    strings = ('image', 'phash', 'label', 'best_label', 'error')
    integers = ('face', 'faces', 'width', 'height', *_BOX)
    columns = PER_IMAGE_COLUMNS if per_image else flat_columns(classes, with_head=True)
    fields = [pa.field(name, pa.string() if name in strings else pa.int32()
                       if name in integers or name.startswith('crop_') else pa.float32()) for name in columns]
    return pa.schema(fields, metadata=_metadata(provenance))


def rows_table(rows: Iterable[dict], classes: Sequence[str], provenance: Optional[dict] = None,
               per_image: bool = False):
    """Nested (or per-image) rows as a ``pyarrow.Table`` of `arrow_schema` (an empty table for no rows); names
    that are not UTF-8 as `imgutils_facequal.store.paths.text_path` writes them."""
    import pyarrow as pa
    schema = arrow_schema(classes, provenance, per_image)
    if per_image:
        flat = [{name: row.get(name) for name in PER_IMAGE_COLUMNS} for row in rows]
    else:
        flat = [flat_row(row, classes, with_head=True) for row in rows]
    for row in flat:  # Parquet holds valid UTF-8 only (`imgutils_facequal.store.paths.text_path`)
        row['image'] = text_path(row['image'])
    return pa.Table.from_pylist(flat, schema=schema)


# ----------------------------------------------------------------------------- rows and results


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


def records(rows) -> List[dict]:
    """Nested rows from a list of rows or a pandas DataFrame (nested or flat columns)."""
    found = rows.to_dict('records') if hasattr(rows, 'to_dict') and hasattr(rows, 'columns') else rows
    result = []
    for record in found:
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


def face_result(row: dict) -> FaceQualityResult:
    """The `imgutils_facequal.FaceQualityResult` of a face row."""
    def box(key, kind):
        value = row.get(key)
        return None if value is None else tuple(kind(v) for v in value)
    return FaceQualityResult(bbox=box('bbox', int), label=row['label'], score=row.get('score'),
                             scores=dict(row.get('scores') or {}), quality=row.get('quality'),
                             detection_score=row.get('detection_score'), head_bbox=box('head_bbox', float),
                             crop_bbox=box('crop_bbox', int))


def scored_images(rows, root: Optional[str] = None) -> List[ImageResult]:
    """The saved rows of a run as one `imgutils_facequal.ImageResult` per image, in file order.

    :param rows: Nested rows (`imgutils_facequal.store.read_scores`) or a DataFrame of them.
    :param root: The folder output paths are taken relative to; default the deepest folder
        that holds every image (`imgutils_facequal.store.paths.common_root`).
    :return: Results as the pipeline gives them, without decoded images. A row repeated
        for the same face (a file appended to twice) counts once.
    :raises ValueError: When the rows are one per image (``score --per-image``): they hold no faces.
    """
    found = records(rows)
    if found and all('face' not in row and 'best_quality' in row for row in found):
        raise ValueError('These rows are one per image (score --per-image), with no faces to select, crop or show. '
                         'Score again without --per-image.')
    groups: Dict[str, List[dict]] = OrderedDict()
    for row in found:
        groups.setdefault(local_path(row['image']), []).append(row)
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
                faces[row['face']] = face_result(row)
        result.faces = [faces[index] for index in sorted(faces)]
        result.phash = next((row['phash'] for row in image_rows if row.get('phash')), None)
        results.append(result)
    return results


def rows_of(results: Iterable[ImageResult]) -> List[dict]:
    """The nested rows of results (as ``score`` writes them)."""
    return [row for result in results for row in result_rows(result)]
