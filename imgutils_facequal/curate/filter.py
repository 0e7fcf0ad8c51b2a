"""The filter: put the images that pass a threshold, with their sidecars, in a folder; the others,
if asked, in another; a manifest of what was kept.

The thresholds are those of `imgutils_facequal.curate.Thresholds` (class, quality value,
face filters, near-duplicates), or the decisions saved from the report
(`imgutils_facequal.curate.read_decisions`): its thresholds, then its overrides.

Symbolic links follow one rule: the real file wins. A link to an image under the same root
is taken as that image (its name, its sidecars, and a move moves it); a link to a file
elsewhere stands for that file under the link's name: its real bytes are copied or
hard-linked, and a move removes the link and leaves the real file. No link lands in an
output folder, where it could dangle.
"""
import os
from dataclasses import dataclass, field
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from ..pipeline import ImageResult, InputImage
from ..store.paths import saved_path_here
from ..store.schema import records, scored_images
from .decisions import Decisions, decided_images
from .dedup import fill_hashes
from .naming import output_paths, target_in
from .placement import (DEFAULT_SIDECARS, MANIFEST_SEPARATORS, MODES, SourceGone, SourceKept, check_new_file,
                        find_sidecars, place_file, sidecar_name, write_manifest)
from .selection import Thresholds, _thresholds, select_images

__all__ = ['Outcome', 'FilterSummary', 'FolderFilter', 'filter_images']


def _reason(err: OSError, source: str, target: str) -> str:
    if isinstance(err, (FileExistsError, SourceKept, SourceGone)):
        return err.strerror if err.strerror and err.filename else str(err)
    return f'{err.strerror or err} ({source} -> {target})'


def _real_image(image: InputImage) -> InputImage:
    """The image a path stands for, by the rule for symbolic links (see the module): a link to a file
    under the same root is that file."""
    if not os.path.islink(image.path):
        return image
    real, root = os.path.realpath(image.path), os.path.realpath(image.root)
    try:
        relative = os.path.relpath(real, root)
    except ValueError:  # another drive
        return image
    if os.path.isabs(relative) or relative == os.pardir or relative.startswith(os.pardir + os.sep):
        return image
    return InputImage(os.path.join(image.root, relative), image.root)


def _size_differs(path: str, size) -> Optional[str]:
    """Why ``path`` is not the image that was scored (its size is not the one recorded), or ``None``. A
    file whose header cannot be read is left to the file operation."""
    if size is None or not os.path.isfile(path):
        return None
    try:
        from PIL import Image
        with Image.open(path) as image:
            width, height = image.size
            if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # shown turned a quarter, as it was scored
                width, height = height, width
    except Exception:  # noqa: BLE001 - not readable as an image: nothing to compare
        return None
    if (width, height) == tuple(size):
        return None
    return (f'{path} is {width} x {height} pixels, but the scores record {size[0]} x {size[1]}: it is not the image '
            f'that was scored (were the scores made in another folder?); left where it is. Score it again.')


class Outcome(NamedTuple):
    """What `FolderFilter.add` did with one image."""
    image: str
    kept: bool
    action: str  # placed, present, left, missing, taken (moved away by another run meanwhile), failed, would
    target: Optional[str] = None
    message: Optional[str] = None  # why it failed or is missing; for placed or present, what did not follow


@dataclass
class FilterSummary:
    """What a filter did.

    :ivar kept: Targets of the images kept (placed now, or there already from an earlier run).
    :ivar rejected: Targets of the images put in the ``rejected`` folder.
    :ivar present: Of those, images whose target already held the same file (a rerun).
    :ivar missing: Images in the rows that no longer exist (and are not at their target), or that
        another run moved away meanwhile.
    :ivar failed: ``(image, reason)``: unreadable when scored, or a file operation that failed.
    :ivar unscored: Of those, the images that had failed when they were scored.
    :ivar doubled: Targets of moved images whose source could not be removed: in both places.
    :ivar images: Images looked at.
    :ivar duplicates: Images that pass but were dropped as near-duplicates of a better one.
    """
    kept: List[str] = field(default_factory=list)
    rejected: List[str] = field(default_factory=list)
    present: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    failed: List[Tuple[str, str]] = field(default_factory=list)
    unscored: List[str] = field(default_factory=list)
    doubled: List[str] = field(default_factory=list)
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
    :param check_sizes: Leave an image whose size is not the one its result records (saved
        scores that name other files than those scored).
    :raises ValueError: When an image's path under a folder would lie outside it; nothing
        has been written then.
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
                 check_sizes: bool = False, *, thresholds: Optional[Thresholds] = None,
                 min_face_size: Optional[float] = None, max_faces: Optional[int] = None,
                 min_detection_score: Optional[float] = None, dedup_distance: Optional[int] = None,
                 decisions: Optional[Decisions] = None):
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
        self.sources: Dict[str, InputImage] = {image.path: _real_image(image) for image in images}
        names = output_paths(list({image.path: image for image in self.sources.values()}.values()))
        self.names = {path: names[real.path] for path, real in self.sources.items()}
        for folder in (out_dir, rejected):
            if folder is not None:
                for name in names.values():
                    target_in(folder, name)
        self.out_dir, self.rejected_dir = out_dir, rejected
        self.min_label, self.min_quality = self.thresholds.min_label, self.thresholds.min_quality
        self.every_face = self.thresholds.every_face
        self.mode, self.sidecars, self.dry_run, self.check_sizes = mode, tuple(sidecars), dry_run, check_sizes
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

    def decide_with(self, results: Sequence[ImageResult], scores_name: str = 'the scores',
                    as_stored: Optional[Sequence[ImageResult]] = None) -> None:
        """Decide about every image by the decisions given: their thresholds, then their overrides.

        :param as_stored: The same results with their paths as the scores store them (what the
            decisions name), where ``results`` read them from elsewhere (``working_dir``).
        :raises imgutils_facequal.curate.DecisionsError: When they were made from other scores.
        """
        decisions = self.decisions
        if decisions is None:
            raise ValueError('decide_with needs the FolderFilter made with decisions.')
        named = results if as_stored is None else as_stored
        selection = select_images(named, decisions.thresholds)  # once: what is kept, and the duplicates
        kept = decided_images(named, decisions, scores_name, selection)
        self.decided = {result.image.path: keep for result, keep in zip(results, kept)}
        self.duplicate_of = {results[index].image.path: results[best].image.path
                             for index, best in selection.duplicate_of.items()
                             if not self.decided[results[index].image.path]}

    def check_manifest(self, path: str, manifest_format: str = 'lines') -> None:
        """Check, before anything is placed, that a manifest can be written to ``path`` (see
        `check_new_file`) and can hold every name (a line break needs ``manifest_format='nul'``).

        :raises ValueError: When a name holds a line break and the format is ``lines``.
        :raises FileExistsError: When ``path`` exists.
        :raises OSError: When its folder cannot be written to.
        """
        if manifest_format not in MANIFEST_SEPARATORS:
            raise ValueError(f'manifest_format must be one of {", ".join(MANIFEST_SEPARATORS)}; got '
                             f'{manifest_format!r}.')
        if manifest_format == 'lines':
            for name in self.names.values():
                target = os.path.join(self.out_dir, name)
                if '\n' in target or '\r' in target:
                    raise ValueError(f'{target!r} holds a line break, which a manifest of one path a line cannot '
                                     f'hold: write a NUL-separated one (--manifest-format nul), or rename the image.')
        check_new_file(path)

    def _sidecars(self, source: str, target: str) -> List[str]:
        """Place the sidecars still beside ``source``; what went wrong with them."""
        target_stem = os.path.splitext(os.path.basename(target))[0]
        problems = []
        for path, pattern in find_sidecars(source, self.sidecars):
            sidecar = os.path.join(os.path.dirname(target), sidecar_name(pattern, target_stem))
            try:
                target_in(os.path.dirname(target), sidecar_name(pattern, target_stem))
                place_file(path, sidecar, self.mode)
            except SourceKept as err:
                self.summary.doubled.append(sidecar)
                problems.append(f'its sidecar {path}: {err.strerror}')
            except (OSError, ValueError) as err:
                reason = _reason(err, path, sidecar) if isinstance(err, OSError) else str(err)
                problems.append(f'its sidecar {path} was not placed: {reason}')
        return problems

    def _place(self, source: str, target: str) -> Tuple[str, List[str]]:
        """Place an image, then its sidecars; ``(outcome, problems)``."""
        problems = []
        try:
            outcome = place_file(source, target, self.mode)
        except SourceKept as err:
            outcome = err.outcome
            self.summary.doubled.append(target)
            problems.append(err.strerror)
        return outcome, problems + self._sidecars(source, target)

    def add(self, result: ImageResult) -> Outcome:
        """Decide about one image and put it where it goes; returns what was done."""
        path = result.image.path
        source = self.sources.get(path) or _real_image(result.image)
        summary = self.summary
        summary.images += 1
        if result.error is not None:
            summary.failed.append((path, result.error))
            summary.unscored.append(path)
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
        try:
            target = target_in(folder, self.names.get(path) or source.relative_path)
        except ValueError as err:
            summary.failed.append((path, str(err)))
            return Outcome(path, kept, 'failed', message=str(err))
        listed = summary.kept if kept else summary.rejected
        if not os.path.lexists(source.path):
            if os.path.exists(target):  # moved there by an earlier run; its sidecars may not have followed
                listed.append(target)
                summary.present.append(target)
                problems = [] if self.dry_run or self.mode != 'move' else self._sidecars(source.path, target)
                return self._done(path, kept, 'present', target, problems)
            summary.missing.append(path)
            return Outcome(path, kept, 'missing', target, f'{path} no longer exists')
        if self.dry_run:
            listed.append(target)
            return Outcome(path, kept, 'would', target)
        differs = _size_differs(source.path, result.size) if self.check_sizes else None
        if differs:
            summary.failed.append((path, differs))
            return Outcome(path, kept, 'failed', target, differs)
        try:
            action, problems = self._place(source.path, target)
        except SourceGone as err:
            summary.missing.append(path)
            return Outcome(path, kept, 'taken', target, err.strerror)
        except OSError as err:
            reason = _reason(err, source.path, target)
            summary.failed.append((path, reason))
            return Outcome(path, kept, 'failed', target, reason)
        listed.append(target)
        if action == 'present':
            summary.present.append(target)
        return self._done(path, kept, action, target, problems)

    def _done(self, path: str, kept: bool, action: str, target: str, problems: List[str]) -> Outcome:
        if problems:  # the image is in place; what did not follow it is reported
            self.summary.failed.append((path, '; '.join(problems)))
            return Outcome(path, kept, action, target, f'{path} went to {target}, but ' + '; '.join(problems))
        return Outcome(path, kept, action, target)


def filter_images(rows, out_dir: str, min_label: Optional[str] = None, min_quality: Optional[float] = None,
                  every_face: bool = False, mode: str = 'copy', sidecars: Sequence[str] = DEFAULT_SIDECARS,
                  rejected: Optional[str] = None, manifest: Optional[str] = None, dry_run: bool = False,
                  root: Optional[str] = None, manifest_format: str = 'lines',
                  working_dir: Optional[str] = None, *, thresholds: Optional[Thresholds] = None,
                  min_face_size: Optional[float] = None, max_faces: Optional[int] = None,
                  min_detection_score: Optional[float] = None, dedup_distance: Optional[int] = None,
                  decisions: Optional[Decisions] = None) -> FilterSummary:
    """Copy, hard-link or move the images of saved rows that pass a threshold to ``out_dir``,
    with their sidecars; loads no model.

    :param rows: Nested rows (`imgutils_facequal.store.read_scores`) or a DataFrame of them.
    :param root: Folder the paths under ``out_dir`` are relative to (default: the deepest
        folder holding every image, `common_root`).
    :param manifest: Also write the kept images' paths under ``out_dir`` to this new file
        (never over an existing one; checked before anything is placed).
    :param manifest_format: ``lines`` (one path a line) or ``nul`` (each path ended by a
        NUL byte, for names that hold a line break; ``xargs -0`` reads it).
    :param working_dir: The folder the scores were made in (their provenance's
        ``working_dir``): relative paths are read from it (default: the current folder).
    :param dedup_distance: Keep one image of each group of near-duplicates (the one with the
        best face); images whose rows have no ``phash`` get one from their file.
    :param decisions: Saved decisions (`imgutils_facequal.curate.read_decisions`): their
        thresholds, then their overrides, instead of thresholds given here.

    The other arguments are those of `FolderFilter`; an image whose size is not the one
    recorded is left where it is. Images in the rows that no longer exist are listed in
    ``missing``; a file that cannot be placed, in ``failed``; the rest go on.

    Example:

        >>> from imgutils_facequal import filter_images
        >>> from imgutils_facequal.store import read_scores
        >>> summary = filter_images(read_scores('scores.jsonl').rows, 'train/', min_label='good')  # doctest: +SKIP
        >>> len(summary.kept), summary.missing, summary.failed  # doctest: +SKIP
        (412, [], [])
    """
    as_stored = None
    if working_dir is not None:
        as_stored = scored_images(rows, root)  # the paths the decisions name
        rows = [dict(row, image=saved_path_here(row['image'], working_dir)) for row in records(rows)]
    results = scored_images(rows, root)
    sorter = FolderFilter([result.image for result in results], out_dir, min_label, min_quality, every_face, mode,
                          sidecars, rejected, dry_run, check_sizes=True, thresholds=thresholds,
                          min_face_size=min_face_size, max_faces=max_faces, min_detection_score=min_detection_score,
                          dedup_distance=dedup_distance, decisions=decisions)
    if manifest and not dry_run:
        sorter.check_manifest(manifest, manifest_format)
    if sorter.thresholds.dedup_distance is not None:
        fill_hashes(results)
    if decisions is not None:
        sorter.decide_with(results, as_stored=as_stored)
    elif sorter.thresholds.dedup_distance is not None:
        sorter.decide(results)
    for result in results:
        sorter.add(result)
    if manifest and not dry_run:
        write_manifest(manifest, sorter.summary.kept, MANIFEST_SEPARATORS[manifest_format])
    return sorter.summary
