"""``imgutils-facequal filter`` and ``crop``: the keepers to a folder, the faces as files."""
import json
import os
import shutil
from typing import Optional

import click

from ..pipeline import find_images
from ..quality import QUALITY_ORDER, quality_at_least
from .common import Progress, exit_codes, finish, run_pipeline, scoring, scoring_options


def _passes(result, min_quality: Optional[str], min_score: Optional[float], every_face: bool) -> bool:
    if not result.faces:
        return False
    checks = []
    for face in result.faces:
        ok = True
        if min_quality is not None:
            ok = quality_at_least(face.label, min_quality, list(face.scores))
        if min_score is not None:
            ok = ok and face.quality >= min_score
        checks.append(ok)
    return all(checks) if every_face else any(checks)


@click.command(name='filter')
@click.argument('paths', nargs=-1, required=True)
@click.option('--out', 'out_dir', type=click.Path(file_okay=False), required=True, help='Folder for the kept images.')
@click.option('--min-quality', type=click.Choice(QUALITY_ORDER), default=None,
              help='Keep images whose best face (or every face) is this class or better.')
@click.option('--min-score', type=click.FloatRange(0, 1), default=None,
              help='Keep images whose best face (or every face) has a quality value at least this.')
@click.option('--every-face', is_flag=True, help='Require every face to pass, not only the best one.')
@click.option('--mode', type=click.Choice(['copy', 'hardlink', 'move']), default='copy', show_default=True,
              help='How kept images get to --out (relative folders are kept).')
@click.option('--dry-run', is_flag=True, help='Print what would be done and change nothing.')
@scoring_options
@exit_codes()
def filter_command(paths, out_dir, min_quality, min_score, every_face, mode, dry_run, quiet, **kwargs):
    """Copy, hard-link or move the images whose faces reach a quality to a folder.

    Images without a face are never kept. Give --min-quality, --min-score or both.
    """
    if min_quality is None and min_score is None:
        raise click.UsageError('Give --min-quality or --min-score (or both).')
    images = find_images(paths)
    options = scoring(kwargs)
    progress = Progress(len(images), quiet or dry_run)
    kept = 0
    interrupted = False
    verb = {'copy': 'copy', 'hardlink': 'hard-link', 'move': 'move'}[mode]
    try:
        for result in run_pipeline(images, options):
            progress.update(result)
            if result.error is not None:
                click.echo(f'failed {result.image.path}: {result.error}', err=True)
                continue
            if not _passes(result, min_quality, min_score, every_face):
                continue
            target = os.path.join(out_dir, result.image.relative_path)
            if dry_run:
                click.echo(f'would {verb} {result.image.path} -> {target}')
                kept += 1
                continue
            if os.path.exists(target):
                click.echo(f'skipped {result.image.path}: {target} already exists', err=True)
                continue
            os.makedirs(os.path.dirname(target) or '.', exist_ok=True)
            try:
                if mode == 'copy':
                    shutil.copy2(result.image.path, target)
                elif mode == 'hardlink':
                    os.link(result.image.path, target)
                else:
                    shutil.move(result.image.path, target)
            except OSError as err:
                progress.failed.append(result.image.path)
                click.echo(f'failed to {verb} {result.image.path} -> {target}: {err}', err=True)
                continue
            kept += 1
    except KeyboardInterrupt:
        interrupted = True
    finish(progress, interrupted, None if quiet else (
        f'{"Would keep" if dry_run else "Kept"} {kept} of {progress.images} images'
        f'{"" if dry_run else f" ({verb} to {out_dir})"}.'))


@click.command()
@click.argument('paths', nargs=-1, required=True)
@click.option('--out', 'out_dir', type=click.Path(file_okay=False), required=True, help='Folder for the crops.')
@click.option('--min-quality', type=click.Choice(QUALITY_ORDER), default=None,
              help='Only write faces of this class or better.')
@click.option('--sidecar', is_flag=True,
              help='Name crops {image}_{face}.png and put the quality in a {image}_{face}.json beside each, '
                   'instead of in the file name.')
@click.option('--image-format', type=click.Choice(['png', 'jpg', 'webp']), default='png', show_default=True)
@scoring_options
@exit_codes()
def crop(paths, out_dir, min_quality, sidecar, image_format, quiet, **kwargs):
    """Write each face's crop (the region the classifier saw), with its quality in the name or a sidecar.

    File names: {image}_{face}_{label}_{quality:.3f}.{ext} (relative folders are kept).
    """
    images = find_images(paths)
    options = scoring(kwargs)
    progress = Progress(len(images), quiet)
    written = 0
    interrupted = False
    try:
        for result in run_pipeline(images, options, keep_images=True):
            progress.update(result)
            if result.error is not None:
                click.echo(f'failed {result.image.path}: {result.error}', err=True)
                continue
            stem = os.path.splitext(result.image.relative_path)[0]
            for index, face in enumerate(result.faces):
                if min_quality is not None and not quality_at_least(face.label, min_quality, list(face.scores)):
                    continue
                name = f'{stem}_{index}' if sidecar else f'{stem}_{index}_{face.label}_{face.quality:.3f}'
                target = os.path.join(out_dir, f'{name}.{image_format}')
                os.makedirs(os.path.dirname(target) or '.', exist_ok=True)
                result.decoded.crop(face.crop_bbox).save(target)
                if sidecar:
                    with open(os.path.join(out_dir, f'{name}.json'), 'w', encoding='utf-8') as f:
                        json.dump({'image': result.image.path, 'face': index, 'bbox': list(face.bbox),
                                   'crop_bbox': list(face.crop_bbox), 'label': face.label, 'score': face.score,
                                   'scores': face.scores, 'quality': face.quality,
                                   'detection_score': face.detection_score}, f, indent=2)
                written += 1
            result.decoded = None
    except KeyboardInterrupt:
        interrupted = True
    finish(progress, interrupted, None if quiet else f'Wrote {written} crops to {out_dir}.')
