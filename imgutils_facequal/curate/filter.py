"""The filter: put the images that pass a threshold, with their sidecars, in a folder; the others,
if asked, in another; a manifest of what was kept."""
import os
from dataclasses import dataclass, field
from typing import List, NamedTuple, Optional, Sequence, Tuple

from ..pipeline import ImageResult, InputImage
from ..store.schema import scored_images
from .naming import output_paths
from .placement import DEFAULT_SIDECARS, MODES, find_sidecars, place_file, sidecar_name, write_manifest
from .selection import image_passes

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

    def __init__(self, images: Sequence[InputImage], out_dir: str, min_label: Optional[str] = None,
                 min_quality: Optional[float] = None, every_face: bool = False, mode: str = 'copy',
                 sidecars: Sequence[str] = DEFAULT_SIDECARS, rejected: Optional[str] = None, dry_run: bool = False):
        if mode not in MODES:
            raise ValueError(f'mode must be one of {", ".join(MODES)}; got {mode!r}.')
        if min_label is None and min_quality is None:
            raise ValueError('Give min_label or min_quality (or both).')
        self.names = output_paths(images)
        self.out_dir, self.rejected_dir = out_dir, rejected
        self.min_label, self.min_quality, self.every_face = min_label, min_quality, every_face
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
        kept = image_passes(result.faces, self.min_label, self.min_quality, self.every_face)
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
                  root: Optional[str] = None) -> FilterSummary:
    """Copy, hard-link or move the images of saved rows that pass a threshold to ``out_dir``,
    with their sidecars; loads no model.

    :param rows: Nested rows (`imgutils_facequal.store.read_scores`) or a DataFrame of them.
    :param root: Folder the paths under ``out_dir`` are relative to (default: the deepest
        folder holding every image, `common_root`).
    :param manifest: Also write the kept images' paths under ``out_dir`` to this file.

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
                          sidecars, rejected, dry_run)
    for result in results:
        sorter.add(result)
    if manifest and not dry_run:
        write_manifest(manifest, sorter.summary.kept)
    return sorter.summary
