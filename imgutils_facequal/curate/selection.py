"""Choosing faces and thresholds from saved scores: what a threshold keeps, and a table of what each would keep.

A face "reaches" ``min_label`` when its class ranks at or above it, and ``min_quality``
when its quality value (`imgutils_facequal.face_quality_value`) is at least it. An image
passes when its best face reaches both (with ``every_face``, when every face does); an
image without a face never passes.
"""
from dataclasses import dataclass, field
from typing import Any, Dict, List, NamedTuple, Optional, Sequence

from ..pipeline import ImageResult
from ..quality import QUALITY_ORDER, quality_ranks, reaches
from ..scoring import FaceQualityResult
from ..store.schema import face_result, records, scored_images

__all__ = ['DEFAULT_QUALITY_STEPS', 'ThresholdRow', 'ThresholdTable', 'face_passes', 'image_passes', 'kept_images',
           'kept_faces', 'threshold_table', 'table_of']

#: The ``min_quality`` steps of `threshold_table`.
DEFAULT_QUALITY_STEPS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def _classes(face: FaceQualityResult) -> List[str]:
    return list(face.scores) if face.scores else list(QUALITY_ORDER)


def face_passes(face: FaceQualityResult, min_label: Optional[str] = None, min_quality: Optional[float] = None) -> bool:
    """Whether a face reaches class ``min_label`` and quality value ``min_quality`` (``None``: no condition).

    :raises ValueError: When ``min_label`` is not a class of the model that scored the face.
    :raises TypeError: When ``min_quality`` is not a number (a class goes in ``min_label``).
    """
    return reaches(face.label, face.quality, _classes(face), min_label, min_quality)


def image_passes(faces: Sequence[FaceQualityResult], min_label: Optional[str] = None,
                 min_quality: Optional[float] = None, every_face: bool = False) -> bool:
    """Whether an image with these faces passes: its best face (or, with ``every_face``, every face)
    reaches the thresholds. An image without a face never passes."""
    if not faces:
        return False
    checks = (face_passes(face, min_label, min_quality) for face in faces)
    return all(checks) if every_face else any(checks)


def kept_images(rows, min_label: Optional[str] = None, min_quality: Optional[float] = None,
                every_face: bool = False) -> List[str]:
    """The images (paths as in the rows) that a threshold keeps, in file order.

    Example:

        >>> from imgutils_facequal import kept_images
        >>> from imgutils_facequal.store import read_scores
        >>> kept_images(read_scores('scores.jsonl').rows, min_label='good')  # doctest: +SKIP
        ['frames/0001.png', 'frames/0007.png']
    """
    return [result.image.path for result in scored_images(rows)
            if result.error is None and image_passes(result.faces, min_label, min_quality, every_face)]


def kept_faces(rows, min_label: Optional[str] = None, min_quality: Optional[float] = None) -> List[dict]:
    """The face rows that reach a threshold (what ``crop --min-label`` writes), in file order."""
    kept = []
    for row in records(rows):
        if row.get('error') or row.get('label') is None:
            continue
        if face_passes(face_result(row), min_label, min_quality):
            kept.append(row)
    return kept


class ThresholdRow(NamedTuple):
    """What one threshold keeps.

    :ivar option: ``min_label`` or ``min_quality``.
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
    :ivar rows: One `ThresholdRow` per class (worst first), then one per ``min_quality`` step.
    """
    images: int
    with_faces: int
    faces: int
    failed: int
    per_class: Dict[str, int]
    rows: List[ThresholdRow] = field(default_factory=list)

    def to_text(self) -> str:
        """The table as aligned plain text, as ``filter --thresholds`` prints it."""
        images, faces = (f'{count} {noun}{"" if count == 1 else "s"}' for count, noun in
                         ((self.images, 'image'), (self.faces, 'face')))
        lines = [f'{images} ({self.with_faces} with faces, {self.failed} failed), {faces}',
                 '  faces per class: ' + (', '.join(f'{name} {count}' for name, count in self.per_class.items())
                                          or 'none'),
                 '', f'{"threshold":<24} {"images":>8} {"every face":>11} {"faces":>8}']
        for row in self.rows:
            value = row.value if row.option == 'min_label' else f'{row.value:.2f}'
            lines.append(f'{"--" + row.option.replace("_", "-") + " " + str(value):<24} {row.images:>8} '
                         f'{row.images_every_face:>11} {row.faces:>8}')
        return '\n'.join(lines)


def threshold_table(rows, min_qualities: Sequence[float] = DEFAULT_QUALITY_STEPS) -> ThresholdTable:
    """How many images (by their best face, and by every face) and how many faces each
    ``min_label`` class and each ``min_quality`` step keeps, from saved rows alone.

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
    return table_of(scored_images(rows), min_qualities)


def table_of(results: Sequence[ImageResult], min_qualities: Sequence[float] = DEFAULT_QUALITY_STEPS) -> ThresholdTable:
    """`threshold_table` of results (from the pipeline, or `scored_images`)."""
    faces = [face for result in results for face in result.faces]
    classes: List[str] = []
    for face in faces:
        for name in _classes(face):
            if name not in classes:
                classes.append(name)
    ordered = classes or list(QUALITY_ORDER)  # the model's order, as the summary and the report show them
    ranks = quality_ranks(ordered)
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
        table.rows.append(ThresholdRow('min_label', name, sum(1 for best, *_ in per_image if best >= rank),
                                       sum(1 for _, worst, *_ in per_image if worst >= rank),
                                       sum(1 for value in face_ranks if value >= rank)))
    for step in min_qualities:
        table.rows.append(ThresholdRow('min_quality', float(step), sum(1 for *_, best, _ in per_image if best >= step),
                                       sum(1 for *_, worst in per_image if worst >= step),
                                       sum(1 for value in face_values if value >= step)))
    return table
