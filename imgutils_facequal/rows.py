"""Rows of results: the one schema behind every output (JSON Lines, CSV, Parquet) and every reader of saved scores.

An image gives one row per face, one row with ``faces`` 0 when it has no face, or one
error row (``faces`` empty, ``error`` set) when it cannot be read. Every row carries
``faces``, the number of faces of its image, so a reader can tell a complete image from
one cut short.

* Nested rows (:func:`result_rows`), as JSON Lines writes them: ``bbox``, ``crop_bbox``
  and ``head_bbox`` are lists, ``scores`` is ``{class: probability}``.
* Flat rows (:func:`flat_row`, :func:`flat_columns`), as CSV and Parquet write them: the
  boxes as ``x0 .. y1``, ``crop_x0 .. crop_y1`` and ``head_x0 .. head_y1``, one ``p_<class>``
  column per class, no list columns. In Parquet the integers are int32 and the floats
  float32 (:func:`arrow_schema`).

:func:`read_rows` reads any of the three formats back as nested rows, and
:func:`provenance` says what produced a run: it goes into ``<output>.meta.json`` and the
Parquet metadata.
"""
import csv
import json
import os
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from ._version import __version__
from .backends import FaceQualityClassifier
from .hub import resolved_commit
from .pipeline import ImageResult
from .scoring import FaceQualityDetector

__all__ = ['FORMATS', 'result_rows', 'per_image_rows', 'per_image_row', 'per_image_schema', 'PER_IMAGE_COLUMNS',
           'complete_images', 'flat_columns', 'flat_row', 'nested_row',
           'arrow_schema', 'rows_table', 'read_rows', 'provenance', 'read_provenance', 'PROVENANCE_KEY', 'format_for']

#: The output formats, by name.
FORMATS = ('jsonl', 'csv', 'parquet')
#: The key of the provenance in Parquet metadata.
PROVENANCE_KEY = b'imgutils_facequal'

_BOX = ('x0', 'y0', 'x1', 'y1')


def format_for(path: Optional[str], fmt: Optional[str] = None) -> str:
    """``fmt``, else the format a file name's extension says (``.csv``, ``.parquet``), else ``jsonl``."""
    if fmt:
        return fmt
    lowered = (path or '').lower()
    return next((name for name in ('csv', 'parquet') if lowered.endswith('.' + name)), 'jsonl')


def _one_line(text: str) -> str:
    return ' '.join(str(text).split())


def result_rows(result: ImageResult) -> List[dict]:
    """One nested row per face; one row for an image with no face; one error row for a failed image."""
    path = result.image.path
    if result.error is not None:
        return [{'image': path, 'face': None, 'faces': None, 'error': _one_line(result.error)}]
    if not result.faces:
        return [{'image': path, 'face': None, 'faces': 0, 'width': result.size[0], 'height': result.size[1],
                 'error': None}]
    rows = []
    for index, face in enumerate(result.faces):
        rows.append({
            'image': path, 'face': index, 'faces': len(result.faces),
            'width': result.size[0], 'height': result.size[1],
            'bbox': [int(v) for v in face.bbox], 'label': face.label, 'score': face.score,
            'scores': face.scores, 'quality': face.quality, 'detection_score': face.detection_score,
            'head_bbox': None if face.head_bbox is None else [round(float(v), 2) for v in face.head_bbox],
            'crop_bbox': [int(v) for v in face.crop_bbox], 'error': None,
        })
    return rows


#: The columns of a per-image summary, in order.
PER_IMAGE_COLUMNS = ('image', 'faces', 'width', 'height', 'best_quality', 'worst_quality', 'mean_quality',
                     'best_label', 'error')


def per_image_rows(result: ImageResult) -> List[dict]:
    """One row for the image: its faces, and the best, worst and mean quality of them (``None`` without faces).

    The best face's class is ``best_label``; an unreadable image gives its error instead.
    """
    path = result.image.path
    if result.error is not None:
        return [{'image': path, 'faces': None, 'error': _one_line(result.error)}]
    qualities = [face.quality for face in result.faces]
    best = max(result.faces, key=lambda face: face.quality, default=None)
    return [{'image': path, 'faces': len(result.faces), 'width': result.size[0], 'height': result.size[1],
             'best_quality': max(qualities, default=None), 'worst_quality': min(qualities, default=None),
             'mean_quality': sum(qualities) / len(qualities) if qualities else None,
             'best_label': None if best is None else best.label, 'error': None}]


def per_image_row(flat: Dict[str, Any]) -> dict:
    """A per-image row read back from CSV text or Parquet: numbers as numbers, empty as ``None``."""
    row = {name: (None if flat.get(name) in (None, '') else flat.get(name)) for name in PER_IMAGE_COLUMNS}
    for name, kind in (('faces', int), ('width', int), ('height', int), ('best_quality', float),
                       ('worst_quality', float), ('mean_quality', float)):
        row[name] = _number(row[name], kind)
    return row


def per_image_schema(metadata: Optional[dict] = None):
    """The Parquet schema of per-image rows: int32 counts and sizes, float32 qualities."""
    import pyarrow as pa
    kinds = {'image': pa.string(), 'faces': pa.int32(), 'width': pa.int32(), 'height': pa.int32(),
             'best_label': pa.string(), 'error': pa.string()}
    encoded = None if metadata is None else {PROVENANCE_KEY: json.dumps(metadata).encode('utf-8')}
    return pa.schema([pa.field(name, kinds.get(name, pa.float32())) for name in PER_IMAGE_COLUMNS], metadata=encoded)


def complete_images(rows: Sequence[dict], per_image: bool = False) -> Tuple[Set[str], List[dict]]:
    """The images whose rows are all there, and those rows, in order.

    An image is complete when it has as many face rows as its ``faces`` says, or one row
    with ``faces`` 0 (``per_image``: one row). Error rows never count: the image is to be
    scored again. Rows of an image cut short, and any later repeat of a complete image,
    are left out.
    """
    done: Set[str] = set()
    kept: List[dict] = []
    index = 0
    while index < len(rows):
        image = rows[index]['image']
        end = index
        while end < len(rows) and rows[end]['image'] == image:
            end += 1
        group = rows[index:end]
        index = end
        expected = group[0].get('faces')
        if image in done or any(row.get('error') for row in group) or expected is None:
            continue
        wanted = 1 if per_image or expected == 0 else expected
        if len(group) >= wanted:
            done.add(image)
            kept.extend(group[:wanted])
    return done, kept


def flat_columns(classes: Sequence[str], with_head: bool = False) -> List[str]:
    """The flat columns, in order; ``with_head`` adds the head box (Parquet has it, CSV does not)."""
    return (['image', 'face', 'faces', 'width', 'height', *_BOX, 'label', 'score', 'quality', 'detection_score']
            + [f'p_{name}' for name in classes] + [f'crop_{name}' for name in _BOX]
            + ([f'head_{name}' for name in _BOX] if with_head else []) + ['error'])


def flat_row(row: dict, classes: Sequence[str], with_head: bool = False) -> Dict[str, Any]:
    """A nested row as flat columns (``None`` where a row has no value)."""
    flat = {name: row.get(name) for name in ('image', 'face', 'faces', 'width', 'height', 'label', 'score', 'quality',
                                              'detection_score', 'error')}
    for prefix, key in (('', 'bbox'), ('crop_', 'crop_bbox'), ('head_', 'head_bbox')):
        box = row.get(key) or [None] * 4
        flat.update({f'{prefix}{name}': value for name, value in zip(_BOX, box)})
    scores = row.get('scores') or {}
    flat.update({f'p_{name}': scores.get(name) for name in classes})
    return {name: flat[name] for name in flat_columns(classes, with_head)}


def _number(value, kind):
    if value is None or value == '':
        return None
    return kind(value)


def nested_row(flat: Dict[str, Any], classes: Optional[Sequence[str]] = None) -> dict:
    """A flat row (from CSV text or Parquet) as the nested row :func:`result_rows` gives."""
    classes = classes if classes is not None else [name[2:] for name in flat if name.startswith('p_')]
    faces = _number(flat.get('faces'), int)
    row = {'image': flat['image'], 'face': _number(flat.get('face'), int), 'faces': faces}
    error = flat.get('error')
    if error not in (None, ''):
        row['error'] = error
        return row
    row.update(width=_number(flat.get('width'), int), height=_number(flat.get('height'), int))
    if not faces:
        row['error'] = None
        return row

    def box(prefix, kind):
        values = [_number(flat.get(f'{prefix}{name}'), kind) for name in _BOX]
        return None if any(value is None for value in values) else values

    row.update(bbox=box('', int), label=flat.get('label'), score=_number(flat.get('score'), float),
               scores={name: _number(flat.get(f'p_{name}'), float) for name in classes},
               quality=_number(flat.get('quality'), float),
               detection_score=_number(flat.get('detection_score'), float),
               head_bbox=box('head_', float), crop_bbox=box('crop_', int), error=None)
    return row


def arrow_schema(classes: Sequence[str], metadata: Optional[dict] = None):
    """The Parquet schema of the flat rows: int32 and float32 columns, strings for names, labels and errors."""
    import pyarrow as pa
    types = {'image': pa.string(), 'label': pa.string(), 'error': pa.string()}
    fields = []
    for name in flat_columns(classes, with_head=True):
        if name in types:
            kind = types[name]
        elif name in ('face', 'faces', 'width', 'height') or name in _BOX or name.startswith('crop_'):
            kind = pa.int32()
        else:
            kind = pa.float32()
        fields.append(pa.field(name, kind))
    encoded = None if metadata is None else {PROVENANCE_KEY: json.dumps(metadata).encode('utf-8')}
    return pa.schema(fields, metadata=encoded)


def rows_table(rows: Iterable[dict], classes: Sequence[str], metadata: Optional[dict] = None):
    """Nested rows as a ``pyarrow.Table`` of :func:`arrow_schema` (an empty table for no rows)."""
    import pyarrow as pa
    schema = arrow_schema(classes, metadata)
    flat = [flat_row(row, classes, with_head=True) for row in rows]
    return pa.Table.from_pylist(flat, schema=schema)


def _read_parquet(path: str) -> List[dict]:
    import pyarrow.parquet as pq
    table = pq.read_table(path)
    classes = [name[2:] for name in table.column_names if name.startswith('p_')]
    return [nested_row(flat, classes) for flat in table.to_pylist()]


def read_rows(path: str, fmt: Optional[str] = None) -> List[dict]:
    """The nested rows of a ``score`` output in any format (from its name, or ``fmt``).

    :raises ValueError: When the file is not an output of that format; the message names the line.
    """
    fmt = format_for(path, fmt)
    if fmt == 'parquet':
        return _read_parquet(path)
    rows = []
    with open(path, 'r', encoding='utf-8', errors='surrogateescape', newline='') as file:
        if fmt == 'csv':
            for number, flat in enumerate(csv.DictReader(file), start=2):
                try:
                    rows.append(nested_row(flat))
                except (KeyError, ValueError) as err:
                    raise ValueError(f'{path!r} line {number} is not a csv row of imgutils-facequal ({err}).') from err
            return rows
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                row['image']
            except (KeyError, TypeError, ValueError) as err:
                raise ValueError(f'{path!r} line {number} is not a jsonl row of imgutils-facequal ({err}).') from err
            rows.append(row)
    return rows


def provenance(faces: FaceQualityDetector) -> Dict[str, Any]:
    """What produces a run's rows: the package, the model and its resolved commit, and every setting that
    changes the results. Two runs may share an output only when these agree (``version`` aside)."""
    classifier: FaceQualityClassifier = faces.classifier
    source = classifier.source
    locator = faces.locator
    return {
        'package': 'imgutils-facequal', 'version': __version__,
        'model': source.model_name, 'repo_id': source.repo_id, 'revision': source.revision,
        'commit': resolved_commit(source), 'local_dir': source.local_dir,
        'backend': classifier.backend, 'precision': classifier.precision, 'classes': list(classifier.classes),
        'detector': locator.detector, 'detector_options': dict(sorted(locator.detector_options.items())),
        'crop': locator.crop, 'margin': locator.margin, 'head_detector': locator.head_detector,
        'head_localisation': locator.head_localisation,
        'head_detector_options': dict(sorted(locator.head_detector_options.items())),
    }


def read_provenance(path: str) -> Optional[Dict[str, Any]]:
    """The provenance saved beside an output (``<output>.meta.json``) or in a Parquet file; ``None`` if none."""
    if format_for(path) == 'parquet' and os.path.isfile(path):
        import pyarrow.parquet as pq
        metadata = pq.read_schema(path).metadata or {}
        return json.loads(metadata[PROVENANCE_KEY]) if PROVENANCE_KEY in metadata else None
    sidecar = path + '.meta.json'
    if not os.path.isfile(sidecar):
        return None
    with open(sidecar, 'r', encoding='utf-8') as file:
        return json.load(file)
