"""Choosing faces and thresholds from saved scores: what a threshold keeps, and a table of what each would keep.

A face "reaches" ``min_label`` when its class ranks at or above it, and ``min_quality``
when its quality value (`imgutils_facequal.face_quality_value`) is at least it.

The face filters say which faces count at all: a face counts when its size (`face_size`,
the geometric mean of its box's sides in pixels, the measure the model's labels were
made from) is at least ``min_face_size`` and its detector confidence at least
``min_detection_score``. An image is eligible when it has a counting face and at most
``max_faces`` of them; it passes when it is eligible and its best counting face reaches
both thresholds (with ``every_face``, every counting face does). An image without a
face, or that could not be read, never passes. `Thresholds` holds all of these, and
``dedup_distance``: then of each group of near-duplicates (`imgutils_facequal.curate.dedup`)
only the passing image with the best face is kept.
"""
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, List, NamedTuple, Optional, Sequence

from ..pipeline import ImageResult
from ..quality import QUALITY_ORDER, quality_ranks, reaches
from ..scoring import FaceQualityResult
from ..store.schema import face_result, records, scored_images
from ..wording import plural
from .dedup import duplicate_groups

__all__ = ['DEFAULT_QUALITY_STEPS', 'FACE_FILTERS', 'Thresholds', 'Selection', 'ThresholdRow', 'ThresholdTable',
           'face_size', 'face_passes', 'image_passes', 'kept_images', 'kept_faces', 'select_images',
           'threshold_table', 'table_of']

#: The ``min_quality`` steps of `threshold_table`.
DEFAULT_QUALITY_STEPS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
#: The face filters of `Thresholds`, in the order the threshold table lists them.
FACE_FILTERS = ('min_face_size', 'max_faces', 'min_detection_score')


def face_size(face_or_bbox) -> float:
    """The size of a face in pixels: the geometric mean ``sqrt(width * height)`` of its box.

    :param face_or_bbox: A `imgutils_facequal.FaceQualityResult`, a face row (``bbox`` or
        ``x0 .. y1``), or a box ``(x0, y0, x1, y1)``.

    >>> face_size((10, 20, 42, 28))
    16.0
    """
    if isinstance(face_or_bbox, dict):
        box = face_or_bbox.get('bbox') or [face_or_bbox[name] for name in ('x0', 'y0', 'x1', 'y1')]
    else:
        box = getattr(face_or_bbox, 'bbox', face_or_bbox)
    x0, y0, x1, y1 = (float(value) for value in box)
    return math.sqrt(max(x1 - x0, 0.0) * max(y1 - y0, 0.0))


def _number(name: str, value, integer: bool = False, low: float = 0.0, high: Optional[float] = None):
    if value is None:
        return None
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or (isinstance(value, float) and math.isnan(value)):
        raise TypeError(f'{name} must be {"a whole number" if integer else "a number"}, not {value!r}.')
    if value < low or (high is not None and value > high):
        raise ValueError(f'{name} must be {"at least " + str(low) if high is None else f"in [{low}, {high}]"}; '
                         f'got {value!r}.')
    return value


@dataclass(frozen=True)
class Thresholds:
    """What an image must have to be kept (see the module docs); ``None`` is no condition.

    :ivar min_label: Class the best (or every) counting face must reach.
    :ivar min_quality: Quality value in [0, 1] it must reach.
    :ivar every_face: Every counting face must reach them, not only the best.
    :ivar min_face_size: Faces smaller than this many pixels (`face_size`) do not count.
    :ivar max_faces: Images with more counting faces than this are not kept.
    :ivar min_detection_score: Faces the detector is less sure of do not count.
    :ivar dedup_distance: Keep one image of each group of near-duplicates whose perceptual
        hashes lie within this Hamming distance (`imgutils_facequal.curate.dedup`).

    >>> Thresholds(min_label='good', max_faces=2).to_dict()['max_faces']
    2
    >>> Thresholds.from_dict({'min_quality': 0.5}) == Thresholds(min_quality=0.5)
    True
    """
    min_label: Optional[str] = None
    min_quality: Optional[float] = None
    every_face: bool = False
    min_face_size: Optional[float] = None
    max_faces: Optional[int] = None
    min_detection_score: Optional[float] = None
    dedup_distance: Optional[int] = None

    def __post_init__(self):
        if self.min_label is not None and not isinstance(self.min_label, str):
            raise TypeError(f'min_label is a class name such as {QUALITY_ORDER[2]!r}, not {self.min_label!r}.')
        if isinstance(self.min_quality, str):
            raise TypeError(f'min_quality is the quality value in [0, 1], not {self.min_quality!r}; '
                            f'to keep a class or better, give min_label={self.min_quality!r}.')
        _number('min_quality', self.min_quality, high=1.0)
        if not isinstance(self.every_face, bool):
            raise TypeError(f'every_face must be true or false, not {self.every_face!r}.')
        _number('min_face_size', self.min_face_size)
        _number('max_faces', self.max_faces, integer=True, low=1)
        _number('min_detection_score', self.min_detection_score, high=1.0)
        _number('dedup_distance', self.dedup_distance, integer=True, high=63)

    @property
    def face_filters(self) -> Dict[str, Any]:
        """The face filters given, ``{name: value}``."""
        return {name: getattr(self, name) for name in FACE_FILTERS if getattr(self, name) is not None}

    def to_dict(self) -> Dict[str, Any]:
        """Every field, as JSON holds it."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> 'Thresholds':
        """Thresholds from `to_dict` (missing fields: no condition).

        :raises ValueError: On a field it does not know (naming it) or a value out of range.
        :raises TypeError: On a value of the wrong kind.
        """
        if not isinstance(values, dict):
            raise TypeError(f'thresholds must be an object of {", ".join(f.name for f in fields(cls))}; '
                            f'got {values!r}.')
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f'unknown threshold {", ".join(map(repr, unknown))}; known: {", ".join(sorted(known))}.')
        values = dict(values)
        if values.get('every_face') is None:
            values.pop('every_face', None)
        return cls(**values)

    def counts(self, face: FaceQualityResult) -> bool:
        """Whether a face counts: big enough and detected surely enough."""
        if self.min_face_size is not None and face_size(face) < self.min_face_size:
            return False
        if self.min_detection_score is not None:
            return face.detection_score is not None and face.detection_score >= self.min_detection_score
        return True

    def counting_faces(self, faces: Sequence[FaceQualityResult]) -> List[FaceQualityResult]:
        """The faces that count, in order."""
        return [face for face in faces if self.counts(face)]

    def eligible(self, faces: Sequence[FaceQualityResult]) -> bool:
        """Whether an image with these faces has a counting face, and at most ``max_faces`` of them."""
        count = len(self.counting_faces(faces))
        return count >= 1 and (self.max_faces is None or count <= self.max_faces)

    def passes(self, faces: Sequence[FaceQualityResult]) -> bool:
        """Whether an image with these faces passes (before near-duplicates are removed)."""
        counting = self.counting_faces(faces)
        if not counting or (self.max_faces is not None and len(counting) > self.max_faces):
            return False
        checks = (face_passes(face, self.min_label, self.min_quality) for face in counting)
        return all(checks) if self.every_face else any(checks)

    def result_passes(self, result: ImageResult) -> bool:
        """Whether an image result passes; one that could not be read never does."""
        return result.error is None and self.passes(result.faces)

    def best_quality(self, faces: Sequence[FaceQualityResult]) -> Optional[float]:
        """The quality value of the best counting face (``None`` without one)."""
        values = [face.quality for face in self.counting_faces(faces) if face.quality is not None]
        return max(values, default=None)


def _thresholds(min_label=None, min_quality=None, every_face=False, thresholds: Optional[Thresholds] = None,
                **filters) -> Thresholds:
    """One `Thresholds` from keyword arguments, or the one given (in ``thresholds`` or in place of ``min_label``)."""
    if isinstance(min_label, Thresholds):
        min_label, thresholds = None, min_label
    if thresholds is not None:
        if not isinstance(thresholds, Thresholds):
            raise TypeError(f'thresholds must be a Thresholds, not {thresholds!r}.')
        given = [name for name, value in dict(min_label=min_label, min_quality=min_quality, **filters).items()
                 if value is not None] + (['every_face'] if every_face else [])
        if given:
            raise ValueError(f'Give the thresholds either as a Thresholds or as arguments, not both '
                             f'({", ".join(given)} given with a Thresholds).')
        return thresholds
    return Thresholds(min_label, min_quality, every_face, **filters)


def _classes(face: FaceQualityResult) -> List[str]:
    return list(face.scores) if face.scores else list(QUALITY_ORDER)


def face_passes(face: FaceQualityResult, min_label: Optional[str] = None, min_quality: Optional[float] = None) -> bool:
    """Whether a face reaches class ``min_label`` and quality value ``min_quality`` (``None``: no condition).

    :raises ValueError: When ``min_label`` is not a class of the model that scored the face.
    :raises TypeError: When ``min_quality`` is not a number (a class goes in ``min_label``).
    """
    return reaches(face.label, face.quality, _classes(face), min_label, min_quality)


def image_passes(faces: Sequence[FaceQualityResult], min_label: Optional[str] = None,
                 min_quality: Optional[float] = None, every_face: bool = False, *,
                 min_face_size: Optional[float] = None, max_faces: Optional[int] = None,
                 min_detection_score: Optional[float] = None, thresholds: Optional[Thresholds] = None) -> bool:
    """Whether an image with these faces passes: it has a counting face (and at most ``max_faces``),
    and its best counting face (or, with ``every_face``, every one) reaches the thresholds.
    An image without a face never passes. The thresholds come as arguments or as a `Thresholds`."""
    if not faces:
        return False
    return _thresholds(min_label, min_quality, every_face, thresholds, min_face_size=min_face_size,
                       max_faces=max_faces, min_detection_score=min_detection_score).passes(faces)


@dataclass
class Selection:
    """What `Thresholds` keep of results, near-duplicates removed (see `select_images`).

    :ivar passed: Per result, whether it passes the thresholds.
    :ivar kept: Per result, whether it is kept: it passes and is no near-duplicate of a better one.
    :ivar groups: Groups of near-duplicates (indices into the results), the kept one first
        when one of the group is kept, the others in file order; empty without ``dedup_distance``.
    :ivar duplicate_of: ``{index: index of the image kept in its place}`` for the passing images
        dropped as near-duplicates.
    :ivar unhashed: Images that have no perceptual hash, so took no part in the grouping.
    """
    passed: List[bool]
    kept: List[bool]
    groups: List[List[int]] = field(default_factory=list)
    duplicate_of: Dict[int, int] = field(default_factory=dict)
    unhashed: int = 0


def select_images(results: Sequence[ImageResult], thresholds: Thresholds) -> Selection:
    """Which results `Thresholds` keep: those that pass, then, with ``dedup_distance``, of each
    group of near-duplicates the passing one whose best counting face has the highest quality
    value (the first in file order on a tie). Results need ``phash`` to be grouped."""
    passed = [thresholds.result_passes(result) for result in results]
    selection = Selection(passed, list(passed))
    if thresholds.dedup_distance is None:
        return selection
    hashes = [getattr(result, 'phash', None) if result.error is None else None for result in results]
    selection.unhashed = sum(1 for value, result in zip(hashes, results) if value is None and result.error is None)
    for group in duplicate_groups(hashes, thresholds.dedup_distance):
        passing = [index for index in group if passed[index]]
        if passing:
            best = max(passing, key=lambda index: (thresholds.best_quality(results[index].faces), -index))
            for index in passing:
                if index != best:
                    selection.kept[index] = False
                    selection.duplicate_of[index] = best
            group = [best] + [index for index in group if index != best]
        selection.groups.append(group)
    return selection


def kept_images(rows, min_label: Optional[str] = None, min_quality: Optional[float] = None,
                every_face: bool = False, *, min_face_size: Optional[float] = None, max_faces: Optional[int] = None,
                min_detection_score: Optional[float] = None, dedup_distance: Optional[int] = None,
                thresholds: Optional[Thresholds] = None) -> List[str]:
    """The images (paths as in the rows) that a threshold keeps, in file order.

    The thresholds come as arguments or as a `Thresholds` (see the module docs); with
    ``dedup_distance``, one image of each group of near-duplicates is kept.

    Example:

        >>> from imgutils_facequal import kept_images
        >>> from imgutils_facequal.store import read_scores
        >>> kept_images(read_scores('scores.jsonl').rows, min_label='good', min_face_size=32)  # doctest: +SKIP
        ['frames/0001.png', 'frames/0007.png']
    """
    chosen = _thresholds(min_label, min_quality, every_face, thresholds, min_face_size=min_face_size,
                         max_faces=max_faces, min_detection_score=min_detection_score, dedup_distance=dedup_distance)
    results = scored_images(rows)
    selection = select_images(results, chosen)
    return [result.image.path for result, kept in zip(results, selection.kept) if kept]


def kept_faces(rows, min_label: Optional[str] = None, min_quality: Optional[float] = None, *,
               min_face_size: Optional[float] = None, min_detection_score: Optional[float] = None,
               thresholds: Optional[Thresholds] = None) -> List[dict]:
    """The face rows that reach a threshold and count (what ``crop --min-label`` writes), in file order.

    Faces are judged one by one: ``max_faces``, ``every_face`` and ``dedup_distance``, which
    are about images, do not apply."""
    chosen = _thresholds(min_label, min_quality, False, thresholds, min_face_size=min_face_size,
                         min_detection_score=min_detection_score)
    kept = []
    for row in records(rows):
        if row.get('error') or row.get('label') is None:
            continue
        face = face_result(row)
        if chosen.counts(face) and face_passes(face, chosen.min_label, chosen.min_quality):
            kept.append(row)
    return kept


class ThresholdRow(NamedTuple):
    """What one threshold keeps (with the face filters of the table, if any).

    :ivar option: ``min_label`` or ``min_quality``.
    :ivar value: The class, or the quality value.
    :ivar images: Images whose best counting face reaches it.
    :ivar images_every_face: Images whose every counting face reaches it.
    :ivar faces: Counting faces that reach it.
    :ivar after_dedup: With ``dedup_distance``: images kept once near-duplicates go (by the
        table's ``every_face``); else ``None``.
    """
    option: str
    value: Any
    images: int
    images_every_face: int
    faces: int
    after_dedup: Optional[int] = None


def _option(name: str) -> str:
    return '--' + name.replace('_', '-')


@dataclass
class ThresholdTable:
    """How many images and faces each threshold keeps (see `threshold_table`).

    :ivar images: Images in the rows, failed ones included.
    :ivar with_faces: Images with at least one face.
    :ivar faces: Faces in the rows.
    :ivar failed: Images that could not be read when they were scored.
    :ivar per_class: Faces per top class, worst class first.
    :ivar rows: One `ThresholdRow` per class (worst first), then one per ``min_quality`` step.
    :ivar face_filters: The face filters the rows apply, ``{name: value}`` (see `Thresholds`).
    :ivar removed: ``{filter: images}``: of the images with faces, those each face filter
        alone leaves with no counting face (or, ``max_faces``, too many); ``all`` for them together.
    :ivar faces_removed: ``{filter: faces}`` that ``min_face_size`` and ``min_detection_score`` each
        stop counting; ``all`` for both.
    :ivar dedup_distance: The near-duplicate distance (``None``: no grouping).
    :ivar duplicate_groups: Groups of near-duplicates.
    :ivar duplicates: Images in those groups beyond one per group.
    :ivar unhashed: Readable images with no perceptual hash (not grouped).
    """
    images: int
    with_faces: int
    faces: int
    failed: int
    per_class: Dict[str, int]
    rows: List[ThresholdRow] = field(default_factory=list)
    face_filters: Dict[str, Any] = field(default_factory=dict)
    removed: Dict[str, int] = field(default_factory=dict)
    faces_removed: Dict[str, int] = field(default_factory=dict)
    dedup_distance: Optional[int] = None
    duplicate_groups: int = 0
    duplicates: int = 0
    unhashed: int = 0

    def to_text(self) -> str:
        """The table as aligned plain text, as ``filter --thresholds`` prints it."""
        images, faces = plural(self.images, 'image'), plural(self.faces, 'face')
        lines = [f'{images} ({self.with_faces} with faces, {self.failed} failed), {faces}',
                 '  faces per class: ' + (', '.join(f'{name} {count}' for name, count in self.per_class.items())
                                          or 'none')]
        if self.face_filters:
            parts = []
            for name, value in self.face_filters.items():
                part = f'{_option(name)} {value:g} removes {self.removed.get(name, 0)} images'
                if name in self.faces_removed:
                    part += f' ({self.faces_removed[name]} faces)'
                parts.append(part)
            lines.append('  face filters, each alone: ' + ', '.join(parts) + f'; all together '
                         f'{self.removed.get("all", 0)} of {self.with_faces} images with faces')
        if self.dedup_distance is not None:
            lines.append(f'  near-duplicates (--dedup-distance {self.dedup_distance}): {self.duplicate_groups} groups,'
                         f' {self.duplicates} images beyond one per group'
                         + (f'; {self.unhashed} images have no hash' if self.unhashed else ''))
        dedup = self.dedup_distance is not None
        lines += ['', f'{"threshold":<24} {"images":>8} {"every face":>11} {"faces":>8}'
                  + (f' {"after dedup":>12}' if dedup else '')]
        for row in self.rows:
            value = row.value if row.option == 'min_label' else f'{row.value:.2f}'
            lines.append(f'{_option(row.option) + " " + str(value):<24} {row.images:>8} '
                         f'{row.images_every_face:>11} {row.faces:>8}'
                         + (f' {row.after_dedup:>12}' if dedup else ''))
        return '\n'.join(lines)


def threshold_table(rows, min_qualities: Sequence[float] = DEFAULT_QUALITY_STEPS,
                    thresholds: Optional[Thresholds] = None) -> ThresholdTable:
    """How many images (by their best face, and by every face) and how many faces each
    ``min_label`` class and each ``min_quality`` step keeps, from saved rows alone.

    :param thresholds: Its face filters apply to every row of the table, and the table says
        what each removes; with its ``dedup_distance``, each row also says how many images
        are kept once near-duplicates go. Its ``min_label`` and ``min_quality`` are not used.

    Example:

        >>> from imgutils_facequal import threshold_table
        >>> from imgutils_facequal.store import read_scores
        >>> print(threshold_table(read_scores('scores.jsonl').rows).to_text())  # doctest: +SKIP
        9 images (8 with faces, 0 failed), 20 faces
          faces per class: poor 5, ok 5, good 5, excellent 5
        <BLANKLINE>
        threshold                  images  every face    faces
        --min-label poor                8           8       20
        ...
    """
    return table_of(scored_images(rows), min_qualities, thresholds)


def table_of(results: Sequence[ImageResult], min_qualities: Sequence[float] = DEFAULT_QUALITY_STEPS,
             thresholds: Optional[Thresholds] = None) -> ThresholdTable:
    """`threshold_table` of results (from the pipeline, or `scored_images`)."""
    thresholds = thresholds or Thresholds()
    faces = [face for result in results for face in result.faces]
    classes: List[str] = []
    for face in faces:
        for name in _classes(face):
            if name not in classes:
                classes.append(name)
    ordered = classes or list(QUALITY_ORDER)  # the model's order, as the summary and the report show them
    ranks = quality_ranks(ordered)
    readable = [(index, r) for index, r in enumerate(results) if r.error is None and r.faces]
    counting = {index: thresholds.counting_faces(r.faces) for index, r in readable}
    eligible = [index for index, _ in readable if thresholds.eligible(results[index].faces)]
    per_image = {index: (max(ranks[f.label] for f in counting[index]), min(ranks[f.label] for f in counting[index]),
                         max(f.quality for f in counting[index]), min(f.quality for f in counting[index]))
                 for index in eligible}
    counted = [face for index in eligible for face in counting[index]]
    face_ranks = [ranks[face.label] for face in counted]
    face_values = [face.quality for face in counted]
    per_class = {name: sum(1 for face in faces if ranks[face.label] == ranks[name]) for name in ordered}
    table = ThresholdTable(images=len(results), with_faces=len(readable), faces=len(faces),
                           failed=sum(1 for r in results if r.error is not None), per_class=per_class,
                           face_filters=thresholds.face_filters, dedup_distance=thresholds.dedup_distance)
    for name, value in table.face_filters.items():
        alone = Thresholds(**{name: value})
        table.removed[name] = sum(1 for _, r in readable if not alone.eligible(r.faces))
        if name != 'max_faces':
            table.faces_removed[name] = sum(1 for face in faces if not alone.counts(face))
    if table.face_filters:
        table.removed['all'] = len(readable) - len(eligible)
        if len(table.faces_removed) > 1:
            table.faces_removed['all'] = sum(1 for face in faces if not thresholds.counts(face))

    groups: List[List[int]] = []
    if thresholds.dedup_distance is not None:
        hashes = [getattr(r, 'phash', None) if r.error is None else None for r in results]
        groups = duplicate_groups(hashes, thresholds.dedup_distance)
        table.duplicate_groups = len(groups)
        table.duplicates = sum(len(group) - 1 for group in groups)
        table.unhashed = sum(1 for value, r in zip(hashes, results) if value is None and r.error is None)

    def after_dedup(passing: set) -> Optional[int]:
        if thresholds.dedup_distance is None:
            return None
        return len(passing) - sum(max(sum(1 for index in group if index in passing) - 1, 0) for group in groups)

    every = thresholds.every_face
    for name in ordered:
        rank = ranks[name]
        best = {index for index, (top, *_) in per_image.items() if top >= rank}
        worst = {index for index, (_, low, *_) in per_image.items() if low >= rank}
        table.rows.append(ThresholdRow('min_label', name, len(best), len(worst),
                                       sum(1 for value in face_ranks if value >= rank),
                                       after_dedup(worst if every else best)))
    for step in min_qualities:
        best = {index for index, (*_, top, _) in per_image.items() if top >= step}
        worst = {index for index, (*_, low) in per_image.items() if low >= step}
        table.rows.append(ThresholdRow('min_quality', float(step), len(best), len(worst),
                                       sum(1 for value in face_values if value >= step),
                                       after_dedup(worst if every else best)))
    return table
