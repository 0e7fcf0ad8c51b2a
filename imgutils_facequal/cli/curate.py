"""``imgutils-facequal filter`` and ``crop``: the keepers to a folder, the faces as files.

Both score the images given as PATHS, or, with ``--scores``, read the rows of an earlier
``score`` run and load no model. Neither ever overwrites a file or leaves a partial one
(see `imgutils_facequal.curate.place_file`).
"""
import json
import os
from typing import Optional, Sequence, Tuple

import click

from ..atomic import write_new_file
from ..curate import (DEFAULT_DEDUP_DISTANCE, DEFAULT_SIDECARS, FolderFilter, Thresholds, face_passes, output_stems,
                      read_decisions, table_of, write_manifest)
from ..curate.captions import CAPTION_POLICIES, DEFAULT_CAPTION_TAG, TrainingFiles, caption_tag
from ..curate.decisions import check_decisions
from ..curate.dedup import fill_hashes
from ..curate.naming import crop_name, target_in
from ..curate.placement import MANIFEST_SEPARATORS
from ..errors import ImageLoadError
from ..images import load_rgb_image
from ..pipeline import find_images, score_images_with
from ..quality import QUALITY_ORDER
from ..store import describe_differences, scored_images, settings_mismatches
from ..store.paths import local_path, saved_path_here
from .common import (EXIT_UNAVAILABLE, EXIT_USAGE, FiniteFloatRange, Progress, exit_codes, fail, finish, given_settings,
                     load_detector, plural, print_failure, read_saved_scores, scoring_options, settings_from)

_SCORES_HELP = ('Read the faces from saved scores instead of scoring PATHS: an output of `score` (JSON Lines, CSV '
                'or Parquet), a glob, or a folder of shards (score --shard, score --ray); repeat it for several. No '
                'model is loaded. Scoring options given with it must match what the scores record.')


def _prefixes(folders) -> Tuple[str, ...]:
    found = set()
    for folder in folders:
        if folder is not None:
            found.update(path.rstrip(os.sep) + os.sep for path in (os.path.abspath(folder), os.path.realpath(folder)))
    return tuple(found)


def _without_outputs(images, *folders) -> Tuple[list, int]:
    """The inputs outside the output folders: a folder inside a source would otherwise be read
    again on every rerun (and its files nested one level deeper each time)."""
    prefixes = _prefixes(folders)
    kept = [image for image in images if not os.path.abspath(image.path).startswith(prefixes)]
    return kept, len(images) - len(kept)


def _saved_results(scores, kwargs: dict, from_here: bool = True):
    """The results stored in ``scores``, after checking the scoring options given against their provenance; with
    ``from_here``, relative paths are read from the folder the scores were made in (see `_rows_from_here`)."""
    return _results_of(*_read_saved(scores, kwargs), from_here)


def _read_saved(scores, kwargs: dict):
    """``(saved, named)``: the saved scores, read once and checked against the scoring options given, and how
    messages name them."""
    given = given_settings(kwargs)
    saved = read_saved_scores(scores)
    named = ', '.join(saved.files[:3]) + (f' and {len(saved.files) - 3} more' if len(saved.files) > 3 else '')
    if saved.per_image:
        fail(f'{named} holds one row per image (score --per-image), with no face boxes to filter or crop by. Score '
             f'again without --per-image.', EXIT_USAGE)
    if saved.provenance is None:
        if given:
            click.echo(f'Warning: {named} records no model or settings (no .meta.json); '
                       f'{", ".join("--" + name.replace("_", "-") for name in sorted(given))} cannot be checked '
                       f'against it and change nothing.', err=True)
    else:
        problems = describe_differences(settings_mismatches(saved.provenance, **given), 'in the scores', 'given')
        if problems:
            fail(f'{named} was not scored with the options given ({problems}). Drop those options to use the scores '
                 f'as they are, or score again with them.', EXIT_USAGE)
    return saved, named


def _results_of(saved, named: str, from_here: bool = True):
    if not from_here:
        return scored_images(saved.rows)
    return scored_images(_rows_from_here(saved.rows, (saved.provenance or {}).get('working_dir'), named))


def _rows_from_here(rows, working_dir: Optional[str], named: str):
    """The rows with their relative paths read from the folder the scores were made in, wherever this runs."""
    if not working_dir or os.path.normcase(os.path.abspath(working_dir)) == os.path.normcase(os.getcwd()):
        return rows
    if not any(not os.path.isabs(local_path(row['image'])) for row in rows):
        return rows
    if not os.path.isdir(working_dir):
        click.echo(f'Warning: {named} was made in {working_dir}, which is not here: its relative paths are read from '
                   f'the current folder, and an image whose size is not the one recorded is left alone.', err=True)
        return rows
    return [dict(row, image=saved_path_here(row['image'], working_dir)) for row in rows]


def _sidecar_patterns(text: str) -> Tuple[str, ...]:
    if text.strip().lower() in ('', 'none'):
        return ()
    return tuple(part.strip() for part in text.split(',') if part.strip())


def _inputs(paths: Sequence[str], scores: Optional[str], kwargs: dict, *out_folders, saved_results=None):
    """``(images, results or None, options or None)``: from saved scores (``saved_results`` when the caller has
    read them already), or images to score."""
    if scores and paths:
        raise click.UsageError('Give PATHS to score, or --scores with the rows of an earlier run; not both.')
    if not scores and not paths:
        raise click.UsageError('Give PATHS to score, or --scores with the rows of an earlier run.')
    if scores:
        results, ignored = _results_outside(saved_results if saved_results is not None
                                            else _saved_results(scores, kwargs), out_folders)
        return [result.image for result in results], results, None, ignored
    images, ignored = _without_outputs(find_images(paths), *out_folders)
    options = dict(faces=load_detector(settings_from(kwargs)), batch_size=kwargs.pop('batch_size'),
                   workers=kwargs.pop('workers'))
    return images, None, options, ignored


def _results_outside(results, folders):
    prefixes = _prefixes(folders)
    kept = [result for result in results if not os.path.abspath(result.image.path).startswith(prefixes)]
    return kept, len(results) - len(kept)


def _note_ignored(ignored: int, quiet: bool) -> None:
    if ignored and not quiet:
        click.echo(f'Ignored {plural(ignored, "image")} inside the output folders.', err=True)


@click.command(name='filter')
@click.argument('paths', nargs=-1)
@click.option('--scores', multiple=True, help=_SCORES_HELP)
@click.option('--out', '-o', '--output', 'out_dir', type=click.Path(file_okay=False), default=None,
              help='Folder for the kept images.')
@click.option('--min-label', type=click.Choice(QUALITY_ORDER), default=None,
              help='Keep images whose best face (or every face) is this class or better.')
@click.option('--min-quality', type=FiniteFloatRange(0, 1), default=None,
              help='Keep images whose best face (or every face) has a quality value at least this.')
@click.option('--every-face', is_flag=True, help='Require every face to pass, not only the best one.')
@click.option('--min-face-size', type=click.FloatRange(0), default=None, metavar='PX',
              help='Faces smaller than this (the geometric mean of the face box\'s sides, in pixels) do not count.')
@click.option('--max-faces', type=click.IntRange(1), default=None, metavar='N',
              help='Do not keep images with more than N counting faces.')
@click.option('--min-detection-score', type=click.FloatRange(0, 1), default=None, metavar='S',
              help='Faces the detector is less sure of than this do not count.')
@click.option('--dedup', is_flag=True,
              help='Of each group of near-duplicates (perceptual hashes within --dedup-distance), keep only the '
                   'passing image with the best face; the others go to --rejected if given.')
@click.option('--dedup-distance', type=click.IntRange(0, 63), default=None, metavar='D',
              help=f'Hashes at most D bits apart are near-duplicates (implies --dedup; default '
                   f'{DEFAULT_DEDUP_DISTANCE}).')
@click.option('--decisions', 'decisions_file', type=click.Path(dir_okay=False), default=None,
              help='With --scores: apply decisions saved from the report (decisions.json): its thresholds, then '
                   'its per-image overrides. Give no other threshold option with it.')
@click.option('--mode', type=click.Choice(['copy', 'hardlink', 'move']), default='copy', show_default=True,
              help='How kept images get to --out (relative folders are kept).')
@click.option('--sidecars', default=','.join(DEFAULT_SIDECARS), show_default=True,
              help='Files that travel with each image, comma-separated: extensions, or patterns with {stem}; '
                   '"none" for none.')
@click.option('--rejected', type=click.Path(file_okay=False), default=None,
              help='Also put the images that do not pass (and have no error) in this folder, the same way.')
@click.option('--manifest', type=click.Path(dir_okay=False), default=None,
              help='Write the kept images\' paths under --out to this new file (never over an existing one), one a '
                   'line.')
@click.option('--manifest-format', type=click.Choice(list(MANIFEST_SEPARATORS)), default='lines', show_default=True,
              help='lines: one path a line (a name holding a line break is refused before anything moves); nul: each '
                   'path ended by a NUL byte, for any name (xargs -0 reads it).')
@click.option('--thresholds', is_flag=True,
              help='With --scores: print how many images and faces each --min-label class and --min-quality '
                   'step keeps, and change nothing.')
@click.option('--dry-run', is_flag=True, help='Print what would be done and change nothing.')
@click.option('--caption', is_flag=True,
              help='Write the best face\'s quality tag into each kept image\'s caption under --out (kohya\'s x.txt, '
                   'tags separated by ", "); the caption beside the source is read, not changed.')
@click.option('--caption-extension', default='.txt', show_default=True, help='With --caption: the captions\' '
              'extension (.caption, say).')
@click.option('--caption-policy', type=click.Choice(CAPTION_POLICIES), default='append', show_default=True,
              help='With --caption: what happens to an existing caption (skip: left as it is).')
@click.option('--caption-tag', 'caption_tags', multiple=True, metavar='CLASS=TEXT',
              callback=lambda _, __, value: _caption_tags(value),
              help=f'With --caption: the tag of a class (repeat for others); {{label}} is the class, {{quality}} the '
                   f'quality value; empty: no tag. Default "{DEFAULT_CAPTION_TAG}".')
@click.option('--waifuc-meta', is_flag=True,
              help='Write waifuc\'s .{stem}_meta.json beside each kept image under --out, with its filename and '
                   'face-quality results, keeping the keys of the source\'s meta file.')
@click.option('--edit-moved-files', is_flag=True,
              help='With --mode move and --caption or --waifuc-meta: change the moved captions and meta files '
                   '(the only copies).')
@scoring_options
@exit_codes()
def filter_command(paths, scores, out_dir, min_label, min_quality, every_face, min_face_size, max_faces,
                   min_detection_score, dedup, dedup_distance, decisions_file, mode, sidecars, rejected, manifest,
                   manifest_format, thresholds, dry_run, caption, caption_extension, caption_policy, caption_tags,
                   waifuc_meta, edit_moved_files, quiet, **kwargs):
    """Copy, hard-link or move the images whose faces reach a quality to a folder, with their sidecars.

    Score PATHS, or read the rows of an earlier `score -o FILE` with --scores FILE (no model,
    seconds for a large folder; paths under --out are taken from the deepest folder holding
    every image). Images without a face are never kept. Give --min-label, --min-quality, a
    face filter, or --decisions; --scores FILE --thresholds shows what each would keep. An
    existing file is never overwritten. --caption and --waifuc-meta write the files trainers
    read beside each kept copy, with its quality.
    """
    if dedup_distance is not None:
        dedup = True
    chosen = Thresholds(min_label, min_quality, every_face, min_face_size, max_faces, min_detection_score,
                        (DEFAULT_DEDUP_DISTANCE if dedup_distance is None else dedup_distance) if dedup else None)
    decisions = None
    if decisions_file is not None:
        if not scores:
            raise click.UsageError('--decisions applies decisions made in the report of saved scores: give those '
                                   'scores with --scores.')
        if chosen != Thresholds():
            given = [name for name, value in (('--min-label', min_label), ('--min-quality', min_quality),
                                              ('--every-face', every_face or None), ('--min-face-size', min_face_size),
                                              ('--max-faces', max_faces),
                                              ('--min-detection-score', min_detection_score),
                                              ('--dedup', dedup or None)) if value is not None]
            raise click.UsageError(f'{decisions_file} holds the thresholds chosen in the report; drop '
                                   f'{", ".join(given)}, or drop --decisions.')
        try:
            decisions = read_decisions(decisions_file)
        except FileNotFoundError:
            fail(f'{decisions_file} does not exist: save the decisions from the report first.', EXIT_USAGE)
        chosen = decisions.thresholds
    if thresholds:
        if not scores:
            raise click.UsageError('--thresholds reads saved rows: run `imgutils-facequal score PATHS -o scores.jsonl`'
                                   ', then `filter --scores scores.jsonl --thresholds`.')
        results = _saved_results(scores, kwargs)
        if chosen.dedup_distance is not None:
            _fill_hashes(results, quiet)
        click.echo(table_of(results, thresholds=chosen).to_text())
        return
    if chosen == Thresholds() and decisions is None:
        raise click.UsageError('Give --min-label, --min-quality or a face filter (or --decisions); with saved '
                               'scores, `filter --scores FILE --thresholds` shows what each would keep.')
    if out_dir is None:
        raise click.UsageError("Missing option '--out'.")
    if rejected is not None and os.path.realpath(rejected) == os.path.realpath(out_dir):
        raise click.UsageError('--rejected must be another folder than --out.')
    caption = caption or any(click.get_current_context().get_parameter_source(name)
                             is not click.core.ParameterSource.DEFAULT
                             for name in ('caption_extension', 'caption_policy', 'caption_tags'))
    training = TrainingFiles(caption_extension if caption else None, caption_tags, caption_policy, waifuc_meta, mode,
                             edit_moved_files) if caption or waifuc_meta else None
    patterns = _sidecar_patterns(sidecars)
    if training is not None:
        patterns = training.sidecars_to_place(patterns)
    if decisions is not None:  # checked against every image of the scores, by their paths as stored (the report's)
        saved, named = _read_saved(scores, kwargs)  # read once: checked, then placed from
        as_stored = _results_of(saved, named, from_here=False)
        check_decisions(decisions, as_stored, ', '.join(scores))
        everything = _results_of(saved, named)
    images, results, options, ignored = _inputs(paths, scores, kwargs, out_dir, rejected,
                                                saved_results=everything if decisions is not None else None)
    _note_ignored(ignored, quiet)
    sorter = FolderFilter(images, out_dir, mode=mode, sidecars=patterns, rejected=rejected, dry_run=dry_run,
                          check_sizes=results is not None, thresholds=None if decisions else chosen,
                          decisions=decisions)
    if manifest and not dry_run:
        try:
            sorter.check_manifest(manifest, manifest_format)
        except (ValueError, FileExistsError) as err:
            fail(f'--manifest {manifest}: {err}', EXIT_USAGE)
        except OSError as err:
            fail(f'--manifest {manifest}: {err}; nothing was placed.', EXIT_UNAVAILABLE)
    progress = Progress(len(images), quiet or dry_run, timed=results is None)

    def count(result) -> None:
        progress.update(result)
        if results is not None and result.error is not None:
            progress.failed.pop()  # failed when it was scored, not now: said in the summary, no exit 1

    verb = {'copy': 'copy', 'hardlink': 'hard-link', 'move': 'move'}[mode]
    interrupted = False
    try:
        source = results if results is not None else score_images_with(images=images, **options)
        decided_first = decisions is not None or chosen.dedup_distance is not None
        if decided_first:  # every image is decided before one is placed
            collected = []
            for result in source:
                count(result)
                collected.append(result)
            if chosen.dedup_distance is not None:
                _fill_hashes(everything if decisions is not None else collected, quiet)
            if decisions is not None:
                sorter.decide_with(everything, ', '.join(scores), as_stored=as_stored)
            else:
                sorter.decide(collected)
            source = collected
        for result in source:
            if not decided_first:
                count(result)
            outcome = sorter.add(result)
            if training is not None and outcome.kept and outcome.action in ('placed', 'present'):
                _write_training_files(training, mode, outcome, result, progress)
            if outcome.action == 'would':
                click.echo(f'would {verb} {outcome.image} -> {outcome.target}')
            elif outcome.action == 'missing':
                progress.failed.append(outcome.image)
                click.echo(f'missing {outcome.image}: ' + (
                    f'listed in {", ".join(scores)} but no longer exists (nor at {outcome.target}); score again to '
                    f'drop it.' if scores else 'it no longer exists.'), err=True)
            elif outcome.action == 'taken':
                progress.failed.append(outcome.image)
                click.echo(f'missing {outcome.image}: {outcome.message}.', err=True)
            elif outcome.message and outcome.action in ('placed', 'present'):
                progress.failed.append(outcome.image)
                click.echo(f'incomplete {verb} of {outcome.image}: {outcome.message}', err=True)
            elif outcome.action == 'failed':
                if result.error is None:
                    progress.failed.append(outcome.image)
                    click.echo(f'failed to {verb} {outcome.image}: {outcome.message}', err=True)
                elif results is None:
                    click.echo(f'failed {outcome.image}: {outcome.message}', err=True)
                else:
                    click.echo(f'left {outcome.image}: it failed when it was scored ({outcome.message}).', err=True)
    except KeyboardInterrupt:
        interrupted = True
    summary = sorter.summary
    manifest_error = None
    if manifest and not dry_run and not interrupted:  # a partial list would stop the rerun that completes it
        try:
            write_manifest(manifest, summary.kept, MANIFEST_SEPARATORS[manifest_format])
        except (OSError, ValueError) as err:
            manifest_error = (f'the manifest {manifest} was not written ({getattr(err, "strerror", None) or err}); '
                              f'the images are where the summary says. Run again with another --manifest to write it.')
    unscored = len(summary.unscored) if results is not None else 0
    message = None if quiet else (
        f'{"Would keep" if dry_run else "Kept"} {len(summary.kept)} of {plural(summary.images, "image")}'
        + ('' if dry_run else f' ({verb} to {out_dir})')
        + (f'; {len(summary.rejected)} not passing {"would go" if dry_run else "put"} in {rejected}' if rejected
           else '')
        + (f'; {len(summary.duplicates)} near-duplicates of a better image dropped' if summary.duplicates else '')
        + (f'; {len(summary.present)} were there already' if summary.present else '')
        + (f'; {len(summary.doubled)} files are at their target but also still at their source (it could not be '
           f'removed)' if summary.doubled else '')
        + (f'; {len(summary.missing)} listed in the scores no longer exist' if summary.missing else '')
        + (f'; {unscored} had failed when they were scored (see their error rows), left where they are' if unscored
           else '')
        + (f'; manifest: {manifest}' if manifest and not dry_run and not interrupted and manifest_error is None
           else '; the manifest is written by the run that completes' if manifest and interrupted else '') + '.')
    if manifest_error is not None:
        progress.summary(interrupted)
        if message:
            click.echo(message, err=True)
        fail(manifest_error, EXIT_UNAVAILABLE)
    finish(progress, interrupted, message)


def _caption_tags(values) -> dict:
    tags = {}
    for value in values:
        label, equals, text = value.partition('=')
        if not equals or label.strip() not in QUALITY_ORDER:
            raise click.BadParameter(f'{value!r}: give CLASS=TEXT, CLASS one of {", ".join(QUALITY_ORDER)} '
                                     f'(good="good face", say).')
        tags[label.strip()] = text
    return tags


def _write_training_files(training, mode: str, outcome, result, progress) -> None:
    if mode == 'move' and outcome.action == 'present' and os.path.exists(outcome.image):
        return  # the image stays where it is (its copy was there): so do its caption and meta file
    problems = training.write(outcome.image, outcome.target, result)
    if problems:
        if outcome.image not in progress.failed:
            progress.failed.append(outcome.image)
        click.echo(f'failed to write all of {outcome.target}: ' + '; '.join(problems), err=True)


def _fill_hashes(results, quiet: bool) -> None:
    """Perceptual hashes for the images whose scores hold none, from their files (said on stderr)."""
    missing = sum(1 for result in results if result.error is None and result.phash is None)
    if not missing:
        return
    if not quiet:
        click.echo(f'Computing the perceptual hashes of {missing} images from their files: the scores hold none for '
                   f'them (scored before hashes were recorded, or without the dedup extra).', err=True)
    try:
        computed = fill_hashes(results)
    except ImportError as err:
        fail(str(err))
    if computed < missing and not quiet:
        click.echo(f'Warning: {missing - computed} images could not be read to hash them; they are in no group of '
                   f'near-duplicates.', err=True)


_FORMATS = {'png': 'PNG', 'jpg': 'JPEG', 'webp': 'WEBP'}


def _text_writer(text: str):
    def write(path: str) -> None:
        with open(path, 'w', encoding='utf-8') as file:
            file.write(text)
    return write


@click.command()
@click.argument('paths', nargs=-1)
@click.option('--scores', multiple=True, help=_SCORES_HELP)
@click.option('--out', '-o', '--output', 'out_dir', type=click.Path(file_okay=False), required=True,
              help='Folder for the crops.')
@click.option('--min-label', type=click.Choice(QUALITY_ORDER), default=None,
              help='Only write faces of this class or better.')
@click.option('--sidecar', is_flag=True,
              help='Name crops {image}_{face}.png and put the quality in a {image}_{face}.json beside each, '
                   'instead of in the file name.')
@click.option('--image-format', type=click.Choice(['png', 'jpg', 'webp']), default='png', show_default=True)
@click.option('--caption', is_flag=True, help='Also write a caption beside each crop with its quality tag '
              f'(default "{DEFAULT_CAPTION_TAG}").')
@click.option('--caption-extension', default='.txt', show_default=True, help='With --caption: the captions\' '
              'extension.')
@click.option('--caption-tag', 'caption_tags', multiple=True, metavar='CLASS=TEXT',
              callback=lambda _, __, value: _caption_tags(value),
              help='With --caption: the tag of a class (repeat for others), as for filter.')
@scoring_options
@exit_codes()
def crop(paths, scores, out_dir, min_label, sidecar, image_format, caption, caption_extension, caption_tags, quiet,
         **kwargs):
    """Write each face's crop (the region the classifier saw), with its quality in the name or a sidecar.

    File names: {image}_{face}_{label}_{quality:.3f}.{ext} (relative folders are kept; an
    image that shares its name with another, x.png and x.jpg, keeps its extension in it).
    With --scores FILE the crops are cut from the boxes saved by `score`: no model. With
    --caption each crop gets a caption with its face's quality tag. An existing file is
    never overwritten (a rerun that would write the same bytes skips it).
    """
    images, results, options, ignored = _inputs(paths, scores, kwargs, out_dir)
    _note_ignored(ignored, quiet)
    stems = output_stems(images)
    for stem in stems.values():
        target_in(out_dir, stem)  # a ValueError (exit 2) before anything is written
    from_scores = results is not None
    progress = Progress(len(images), quiet, timed=not from_scores)
    written = present = unscored = 0
    interrupted = False

    def write_crop(result, decoded) -> None:
        nonlocal written, present
        stem = stems[result.image.path]
        for index, face in enumerate(result.faces):
            if min_label is not None and not face_passes(face, min_label):
                continue
            name = crop_name(stem, index) if sidecar else crop_name(stem, index, face.label, face.quality)
            region = decoded.crop(face.crop_bbox)
            targets = [(target_in(out_dir, f'{name}.{image_format}'),
                        lambda temp, region=region: region.save(temp, format=_FORMATS[image_format]))]
            if sidecar:
                info = {'image': result.image.path, 'face': index, 'bbox': list(face.bbox),
                        'crop_bbox': list(face.crop_bbox), 'label': face.label, 'score': face.score,
                        'scores': face.scores, 'quality': face.quality, 'detection_score': face.detection_score}
                targets.append((target_in(out_dir, f'{name}.json'), _text_writer(json.dumps(info, indent=2))))
            tag = caption_tag([face], caption_tags) if caption else None
            if tag is not None:
                extension = caption_extension if caption_extension.startswith('.') else '.' + caption_extension
                targets.append((target_in(out_dir, name + extension), _text_writer(tag)))
            try:
                outcomes = [write_new_file(target, write) for target, write in targets]
            except OSError as err:
                progress.failed.append(result.image.path)
                click.echo(f'failed to write face {index} of {result.image.path}: {err}', err=True)
                continue
            if all(outcome == 'present' for outcome in outcomes):
                present += 1
            else:
                written += 1

    try:
        for result in results if from_scores else score_images_with(images=images, keep_images=True, **options):
            progress.update(result)
            if result.error is not None:
                if from_scores:  # failed when it was scored, not now: said, and in the summary, but no exit 1
                    progress.failed.pop()
                    unscored += 1
                    click.echo(f'left {result.image.path}: it failed when it was scored ({result.error}).', err=True)
                else:
                    print_failure(result, progress)
                continue
            decoded = result.decoded
            if decoded is None:  # from saved scores: decode only images with a face to write
                if not any(min_label is None or face_passes(face, min_label) for face in result.faces):
                    continue
                try:
                    decoded = load_rgb_image(result.image.path)
                except ImageLoadError as err:
                    progress.failed.append(result.image.path)
                    click.echo(f'failed {result.image.path}: {err}', err=True)
                    continue
                if result.size is not None and tuple(decoded.size) != tuple(result.size):
                    progress.failed.append(result.image.path)
                    click.echo(f'failed {result.image.path}: it is {decoded.size[0]} x {decoded.size[1]} pixels, but '
                               f'the scores record {result.size[0]} x {result.size[1]}: it is not the image that was '
                               f'scored (were the scores made in another folder?). Score it again.', err=True)
                    continue
            write_crop(result, decoded)
            result.decoded = None
    except KeyboardInterrupt:
        interrupted = True
    finish(progress, interrupted, None if quiet else
           f'Wrote {plural(written, "crop")} to {out_dir}' + (f'; {present} were there already' if present else '')
           + (f'; {plural(unscored, "image")} had failed when they were scored (see their error rows)' if unscored
              else '')
           + '.')
