"""Decisions made in the report: thresholds, and per-image overrides, saved as ``decisions.json``.

The file::

    {"kind": "imgutils-facequal decisions", "version": 1,
     "scores": {"fingerprint": "<16 hex>", "images": 1234},
     "thresholds": {"min_label": "good", "min_quality": null, "every_face": false,
                    "min_face_size": 32, "max_faces": null, "min_detection_score": null,
                    "dedup_distance": 8},
     "overrides": {"frames/0001.png": "keep", "frames/0002.png": "reject"}}

``thresholds`` is `imgutils_facequal.curate.Thresholds.to_dict`; ``overrides`` are keyed
by the image paths as the scores store them (the rows' ``image``). The fingerprint
(`scores_fingerprint`) ties the decisions to the scores they were made from: applying
them to other scores is refused.

`apply_decisions` keeps what the thresholds keep (near-duplicates removed), then forces
``keep`` images in (even below the thresholds or a near-duplicate; never one that could
not be read) and ``reject`` images out.
"""
import hashlib
import json
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from ..atomic import replace_file
from ..pipeline import ImageResult
from ..store.paths import stored_path
from ..store.schema import records
from .selection import Selection, Thresholds, select_images

__all__ = ['DECISIONS_KIND', 'DECISIONS_VERSION', 'OVERRIDES', 'Decisions', 'DecisionsError', 'scores_fingerprint',
           'make_decisions', 'read_decisions', 'write_decisions', 'check_decisions', 'apply_decisions',
           'decided_images']

#: The ``kind`` of a decisions file.
DECISIONS_KIND = 'imgutils-facequal decisions'
#: The ``version`` this package writes and reads.
DECISIONS_VERSION = 1
#: What an override may say.
OVERRIDES = ('keep', 'reject')


class DecisionsError(ValueError):
    """A decisions file that cannot be used: malformed, or made from other scores."""


def _stored_images(results_or_rows) -> List[str]:
    if hasattr(results_or_rows, 'columns') and hasattr(results_or_rows, 'to_dict'):
        return [str(value) for value in results_or_rows['image'].tolist()]
    items = list(results_or_rows)
    if items and isinstance(items[0], ImageResult):
        return [stored_path(result.image.path) for result in items]
    return [row['image'] for row in records(items)]


def scores_fingerprint(results_or_rows) -> str:
    """What ties decisions to their scores: the first 16 hex digits of the SHA-256 of the
    sorted distinct image paths as stored (the rows' ``image``), joined by newlines.

    :param results_or_rows: Rows (`imgutils_facequal.store.read_scores`), a DataFrame of
        them, or results (`imgutils_facequal.store.scored_images`).

    >>> scores_fingerprint([{'image': 'b.png'}, {'image': 'a.png'}, {'image': 'a.png'}])
    '1baca9d47fd86b4a'
    """
    paths = sorted(set(_stored_images(results_or_rows)))
    return hashlib.sha256('\n'.join(paths).encode('utf-8', errors='surrogateescape')).hexdigest()[:16]


@dataclass
class Decisions:
    """A decisions file, read (`read_decisions`) or made (`make_decisions`).

    :ivar fingerprint: `scores_fingerprint` of the scores they were made from.
    :ivar images: Images in those scores.
    :ivar thresholds: The thresholds chosen.
    :ivar overrides: ``{stored image path: "keep" or "reject"}``.
    :ivar path: The file they were read from (``None`` when made here).
    """
    fingerprint: str
    images: int
    thresholds: Thresholds = field(default_factory=Thresholds)
    overrides: Dict[str, str] = field(default_factory=dict)
    path: Optional[str] = None

    def to_dict(self) -> dict:
        """The file's content."""
        return {'kind': DECISIONS_KIND, 'version': DECISIONS_VERSION,
                'scores': {'fingerprint': self.fingerprint, 'images': self.images},
                'thresholds': self.thresholds.to_dict(), 'overrides': dict(self.overrides)}


def make_decisions(results: Sequence[ImageResult], thresholds: Thresholds,
                   overrides: Optional[Dict[str, str]] = None) -> Decisions:
    """Decisions about ``results`` (overrides keyed by stored image path)."""
    decisions = Decisions(scores_fingerprint(results), len(results), thresholds, dict(overrides or {}))
    _check_overrides(decisions.overrides, 'overrides')
    return decisions


def write_decisions(path: str, decisions: Decisions) -> None:
    """Write a decisions file (atomically: the old one, or the new one, never a part)."""
    replace_file(path, json.dumps(decisions.to_dict(), indent=1, ensure_ascii=False) + '\n')


def _check_overrides(overrides, where: str) -> None:
    if not isinstance(overrides, dict):
        raise DecisionsError(f'{where} must be an object {{"image path": "keep" or "reject"}}; got {overrides!r}.')
    for image, decision in overrides.items():
        if decision not in OVERRIDES:
            raise DecisionsError(f'{where}[{image!r}] must be "keep" or "reject", not {decision!r}.')


def read_decisions(path: str) -> Decisions:
    """Read a decisions file.

    :raises DecisionsError: Naming the file and the field, when it is not JSON, not a
        decisions file, of another version, or a field is malformed.
    :raises OSError: When it cannot be read.
    """
    with open(path, 'rb') as file:
        data = file.read()
    try:
        content = json.loads(data.decode('utf-8'))
    except (UnicodeDecodeError, ValueError) as err:
        raise DecisionsError(f'{path} is not a decisions file: it is not JSON ({err}). Save it again from the '
                             f'report.') from None
    if not isinstance(content, dict) or content.get('kind') != DECISIONS_KIND:
        raise DecisionsError(f'{path} is not a decisions file: its "kind" is not {DECISIONS_KIND!r}. Save one '
                             f'from the report (the "Save decisions" button).')
    if content.get('version') != DECISIONS_VERSION:
        raise DecisionsError(f'{path} is a decisions file of version {content.get("version")!r}; this version of '
                             f'imgutils-facequal reads version {DECISIONS_VERSION}.')
    scores = content.get('scores')
    if (not isinstance(scores, dict) or not isinstance(scores.get('fingerprint'), str)
            or isinstance(scores.get('images'), bool) or not isinstance(scores.get('images'), int)):
        raise DecisionsError(f'{path}: "scores" must be {{"fingerprint": "<16 hex digits>", "images": <count>}}; '
                             f'got {scores!r}.')
    try:
        thresholds = Thresholds.from_dict(content.get('thresholds') or {})
    except (TypeError, ValueError) as err:
        raise DecisionsError(f'{path}: "thresholds": {err}') from None
    overrides = content.get('overrides') or {}
    try:
        _check_overrides(overrides, '"overrides"')
    except DecisionsError as err:
        raise DecisionsError(f'{path}: {err}') from None
    return Decisions(scores['fingerprint'], scores['images'], thresholds, dict(overrides), path)


def check_decisions(decisions: Decisions, results_or_rows, scores_name: str = 'the scores') -> None:
    """Refuse decisions made from other scores than these.

    :raises DecisionsError: Naming both files, when the fingerprints differ.
    """
    fingerprint = scores_fingerprint(results_or_rows)
    if decisions.fingerprint != fingerprint:
        named = decisions.path or 'the decisions'
        count = len(set(_stored_images(results_or_rows)))
        raise DecisionsError(
            f'{named} was made from other scores than {scores_name}: it was decided on {decisions.images} images '
            f'(fingerprint {decisions.fingerprint}), {scores_name} hold {count} (fingerprint {fingerprint}). Open '
            f'the report of {scores_name}, decide there and save the decisions again, or give the scores they '
            f'were made from.')


def decided_images(results: Sequence[ImageResult], decisions: Decisions,
                   scores_name: str = 'the scores', selection: Optional[Selection] = None) -> List[bool]:
    """Per result, whether the decisions keep it: the thresholds (near-duplicates removed), then
    the overrides; an image that could not be read is never kept.

    :param selection: ``select_images(results, decisions.thresholds)``, when the caller has made it.

    :raises DecisionsError: When the decisions were made from other scores, or override an
        image these scores do not hold.
    """
    check_decisions(decisions, results, scores_name)
    kept = list((selection or select_images(results, decisions.thresholds)).kept)
    index = {stored_path(result.image.path): position for position, result in enumerate(results)}
    unknown = sorted(set(decisions.overrides) - set(index))
    if unknown:
        raise DecisionsError(f'{decisions.path or "the decisions"} overrides images {scores_name} do not hold: '
                             f'{", ".join(unknown[:3])}{" ..." if len(unknown) > 3 else ""}.')
    for image, decision in decisions.overrides.items():
        position = index[image]
        kept[position] = decision == 'keep' and results[position].error is None
    return kept


def apply_decisions(results: Sequence[ImageResult], decisions: Decisions,
                    scores_name: str = 'the scores') -> List[str]:
    """The images (paths as the results hold them) the decisions keep, in file order (see `decided_images`).

    Example:

        >>> from imgutils_facequal.curate import apply_decisions, read_decisions
        >>> from imgutils_facequal.store import read_scores, scored_images
        >>> results = scored_images(read_scores('scores.jsonl').rows)  # doctest: +SKIP
        >>> apply_decisions(results, read_decisions('decisions.json'), 'scores.jsonl')  # doctest: +SKIP
        ['frames/0001.png', 'frames/0007.png']
    """
    return [result.image.path for result, kept in zip(results, decided_images(results, decisions, scores_name))
            if kept]
