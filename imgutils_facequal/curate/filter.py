"""The filter: put the images that pass a threshold, with their sidecars, in a folder; the others,
if asked, in another; a manifest of what was kept.

The thresholds are those of `imgutils_facequal.curate.Thresholds` (class, quality value,
face filters, near-duplicates), or the decisions saved from the report
(`imgutils_facequal.curate.read_decisions`): its thresholds, then its overrides."""
import os
from dataclasses import dataclass, field
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from ..pipeline import ImageResult, InputImage
from ..store.schema import scored_images
from .naming import output_paths
from .placement import DEFAULT_SIDECARS, MODES, find_sidecars, place_file, sidecar_name, write_manifest
from .decisions import Decisions, decided_images
from .dedup import fill_hashes
from .selection import Thresholds, _thresholds, select_images

__all__ = ['Outcome', 'FilterSummary', 'FolderFilter', 'filter_images']


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
    :ivar duplicates: Images that pass but were dropped as near-duplicates of a better one.
    """
    kept: List[str] = field(default_factory=list)
    rejected: List[str] = field(default_factory=list)
    present: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    failed: List[Tuple[str, str]] = field(default_factory=list)
    images: int = 0
    duplicates: List[str] = field(default_factory=list)


class FolderFilter:
    """Puts the images that pass a threshold, with their sidecars, in a folder; the others,
    if ``rejected`` is given, in another; never overwrites, never leaves a partial file.

    :param images: Every image of the run (for names no two share, see `output_paths`).
    :param out_dir: Folder for the kept images; relative folders are kept.
    :param mode: ``copy``, ``hardlink`` or ``move`` (see `place_file`).
    :param sidecars: Sidecar patterns that travel with each image (see `find_sidecars`).
    :param rejected: Folder for the images that do not pass (``None``: they stay).
    :param dry_run: Decide, but change nothing.
    :param thresholds: The thresholds as a `Thresholds` instead of ``min_label``, ``min_quality``
        and ``every_face``; the face filters may also come as keyword arguments.
    :param decisions: Saved decisions instead of thresholds (`decide_with` applies them).

    Feed it one `imgutils_facequal.ImageResult` at a time with `add` (from the pipeline or
    from `scored_images`); `summary` says what was done. Near-duplicates (``dedup_distance``)
    and decisions need every result before the first is placed: give them all to `decide`
    (or `decide_with`) first.
    """

    def __init__(self, images: Sequence[InputImage], out_dir: str, min_label: Optional[str] = None,
                 min_quality: Optional[float] = None, every_face: bool = False, mode: str = 'copy',
                 sidecars: Sequence[str] = DEFAULT_SIDECARS, rejected: Optional[str] = None, dry_run: bool = False,
                 *, thresholds: Optional[Thresholds] = None, min_face_size: Optional[float] = None,
                 max_faces: Optional[int] = None, min_detection_score: Optional[float] = None,
                 dedup_distance: Optional[int] = None, decisions: Optional[Decisions] = None):
        if mode not in MODES:
            raise ValueError(f'mode must be one of {", ".join(MODES)}; got {mode!r}.')
        if decisions is not None:
            if thresholds is not None or _thresholds(min_label, min_quality, every_face, None,
                                                     min_face_size=min_face_size, max_faces=max_faces,
                                                     min_detection_score=min_detection_score,
                                                     dedup_distance=dedup_distance) != Thresholds():
                raise ValueError('Give decisions or thresholds, not both: the decisions hold their thresholds.')
            thresholds = decisions.thresholds
        self.thresholds = _thresholds(min_label, min_quality, every_face, thresholds, min_face_size=min_face_size,
                                      max_faces=max_faces, min_detection_score=min_detection_score,
                                      dedup_distance=dedup_distance)
        if self.thresholds == Thresholds() and decisions is None:
            raise ValueError('Give min_label, min_quality or a face filter (or decisions).')
        self.decisions = decisions
        self.names = output_paths(images)
        self.out_dir, self.rejected_dir = out_dir, rejected
        self.min_label, self.min_quality = self.thresholds.min_label, self.thresholds.min_quality
        self.every_face = self.thresholds.every_face
        self.mode, self.sidecars, self.dry_run = mode, tuple(sidecars), dry_run
        self.summary = FilterSummary()
        self.decided: Optional[Dict[str, bool]] = None
        self.duplicate_of: Dict[str, str] = {}

    def decide(self, results: Sequence[ImageResult]) -> None:
        """Decide about every image at once, near-duplicates removed (see `select_images`); `add` then
        places each as decided. Results need ``phash`` (`imgutils_facequal.curate.dedup.fill_hashes`)."""
        selection = select_images(results, self.thresholds)
        self.decided = {result.image.path: kept for result, kept in zip(results, selection.kept)}
        self.duplicate_of = {results[index].image.path: results[best].image.path
                             for index, best in selection.duplicate_of.items()}

    def decide_with(self, results: Sequence[ImageResult], scores_name: str = 'the scores') -> None:
        """Decide about every image by the decisions given: their thresholds, then their overrides.

        :raises imgutils_facequal.curate.DecisionsError: When they were made from other scores.
        """
        decisions = self.decisions
        if decisions is None:
            raise ValueError('decide_with needs the FolderFilter made with decisions.')
        kept = decided_images(results, decisions, scores_name)
        self.decided = {result.image.path: keep for result, keep in zip(results, kept)}
        selection = select_images(results, decisions.thresholds)
        self.duplicate_of = {results[index].image.path: results[best].image.path
                             for index, best in selection.duplicate_of.items()
                             if not self.decided[results[index].image.path]}

    def _place(self, source: str, target: str) -> Tuple[str, List[str]]:
        """Place an image, then its sidecars; ``(outcome, problems with sidecars)``."""
        outcome = place_file(source, target, self.mode)
        if outcome == 'present' and self.mode == 'move' and os.path.exists(source):
            return outcome, []  # the image stays where it is: so do its sidecars
        target_stem = os.path.splitext(os.path.basename(target))[0]
        problems = []
        for path, pattern in find_sidecars(source, self.sidecars):
            sidecar = os.path.join(os.path.dirname(target), sidecar_name(pattern, target_stem))
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
        if self.decided is not None:
            if path not in self.decided:
                raise ValueError(f'{path} was not among the results given to decide().')
            kept = self.decided[path]
        else:
            kept = self.thresholds.passes(result.faces)
        if path in self.duplicate_of:
            summary.duplicates.append(path)
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


def filter_images(rows, out_dir: str, min_label: Optional[str] = None, min_quality: Optional[float] = None,
                  every_face: bool = False, mode: str = 'copy', sidecars: Sequence[str] = DEFAULT_SIDECARS,
                  rejected: Optional[str] = None, manifest: Optional[str] = None, dry_run: bool = False,
                  root: Optional[str] = None, *, thresholds: Optional[Thresholds] = None,
                  min_face_size: Optional[float] = None, max_faces: Optional[int] = None,
                  min_detection_score: Optional[float] = None, dedup_distance: Optional[int] = None,
                  decisions: Optional[Decisions] = None) -> FilterSummary:
    """Copy, hard-link or move the images of saved rows that pass a threshold to ``out_dir``,
    with their sidecars; loads no model.

    :param rows: Nested rows (`imgutils_facequal.store.read_scores`) or a DataFrame of them.
    :param root: Folder the paths under ``out_dir`` are relative to (default: the deepest
        folder holding every image, `common_root`).
    :param manifest: Also write the kept images' paths under ``out_dir`` to this file.
    :param dedup_distance: Keep one image of each group of near-duplicates (the one with the
        best face); images whose rows have no ``phash`` get one from their file.
    :param decisions: Saved decisions (`imgutils_facequal.curate.read_decisions`): their
        thresholds, then their overrides, instead of thresholds given here.

    The other arguments are those of `FolderFilter`. Images in the rows that no longer
    exist are listed in ``missing``; a file that cannot be placed, in ``failed``; the rest
    go on.

    Example:

        >>> from imgutils_facequal import filter_images
        >>> from imgutils_facequal.store import read_scores
        >>> summary = filter_images(read_scores('scores.jsonl').rows, 'train/', min_label='good')  # doctest: +SKIP
        >>> len(summary.kept), summary.missing, summary.failed  # doctest: +SKIP
        (412, [], [])
    """
    results = scored_images(rows, root)
    sorter = FolderFilter([result.image for result in results], out_dir, min_label, min_quality, every_face, mode,
                          sidecars, rejected, dry_run, thresholds=thresholds, min_face_size=min_face_size,
                          max_faces=max_faces, min_detection_score=min_detection_score,
                          dedup_distance=dedup_distance, decisions=decisions)
    if sorter.thresholds.dedup_distance is not None:
        fill_hashes(results)
    if decisions is not None:
        sorter.decide_with(results)
    elif sorter.thresholds.dedup_distance is not None:
        sorter.decide(results)
    for result in results:
        sorter.add(result)
    if manifest and not dry_run:
        write_manifest(manifest, sorter.summary.kept)
    return sorter.summary
