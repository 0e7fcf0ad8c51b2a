"""The ``imgutils-facequal`` command: score, filter and crop folders of images.

Exit codes:

* 0: everything went through;
* 1: the run finished, but some inputs could not be read (each has an error row);
* 2: a usage error (unknown option, bad value);
* 3: a model, backend or plugin cannot be had (nothing was scored);
* 130: interrupted (Ctrl-C); rows already written stay, and a rerun resumes.
"""
import functools
import json
import os
import shutil
import sys
import time
from collections import Counter
from typing import Iterator, List, Optional

import click

from .. import __version__
from ..backends import BACKENDS, DEFAULT_BACKEND, PRECISIONS
from ..detect import visualize_face_quality
from ..errors import FaceQualityError
from ..evaluate import DEFAULT_SETTINGS, evaluate_crop_robustness, parse_settings, read_hf_dataset, read_labelled_folder
from ..export import export_onnx
from ..graphs.check import CHECK_TOLERANCE
from ..models import DEFAULT_MODEL
from ..pipeline import find_images, score_images_with
from ..plugins import list_detectors, list_plugins, list_taggers
from ..quality import QUALITY_ORDER, quality_at_least
from ..scoring import CROP_MODES, DEFAULT_MARGIN, load_face_quality_detector
from .records import ResultWriter, completed_images
from .status import download_detectors, download_model, model_status

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def _fail(message: str, code: int = EXIT_UNAVAILABLE):
    click.echo(f'Error: {message}', err=True)
    sys.exit(code)


def exit_codes(*usage_errors):
    """Map what a command raises to the documented exit codes: the package's own errors (a model,
    backend or plugin that cannot be had) to 3; ``FileExistsError``, ``ValueError`` (options that
    do not go together) and ``usage_errors`` to 2."""
    usage = (FileExistsError, ValueError, *usage_errors)

    def decorate(command):
        @functools.wraps(command)
        def run(*args, **kwargs):
            try:
                return command(*args, **kwargs)
            except FaceQualityError as err:
                _fail(str(err))
            except usage as err:
                _fail(str(err), EXIT_USAGE)
        return run
    return decorate


def _finish(progress, interrupted: bool, message: Optional[str] = None):
    """Print the run's summary (and ``message``), then exit with the documented code."""
    progress.summary(interrupted)
    if message:
        click.echo(message, err=True)
    sys.exit(EXIT_INTERRUPTED if interrupted else progress.exit_code())


def scoring_options(function):
    """The options every command that scores faces shares."""
    options = [
        click.option('--model', 'model_name', default=DEFAULT_MODEL, show_default=True,
                     help='Face-quality model: registered name, hub repo id (org/name) or local directory.'),
        click.option('--revision', default=None, help='Hub revision of the model.'),
        click.option('--backend', type=click.Choice(BACKENDS), default=DEFAULT_BACKEND,
                     show_default=True, help='Inference backend.'),
        click.option('--device', default=None, help='cpu, cuda, cuda:1... (default: the backend picks).'),
        click.option('--precision', type=click.Choice(PRECISIONS), default=PRECISIONS[0], show_default=True,
                     help='bf16: the model\'s blocks run in bfloat16 (opt-in, needs --backend transformers, or '
                          '--backend openvino for the first two stages; faster on CPUs with AVX512-BF16 or AMX).'),
        click.option('--detector', default='face', show_default=True,
                     help='Registered detector (see the plugins command).'),
        click.option('--crop', type=click.Choice(CROP_MODES), default=None,
                     help='What the classifier sees; default: what the model was trained on '
                          '(head for caformer_s36.head_crop, full for caformer_s36).'),
        click.option('--margin', type=click.FloatRange(min=0), default=DEFAULT_MARGIN, show_default=True,
                     help='Margin per side for head and face crops, times the box size.'),
        click.option('--conf-threshold', type=click.FloatRange(0, 1), default=None,
                     help="Detector confidence threshold (default: the detector's)."),
        click.option('--iou-threshold', type=click.FloatRange(0, 1), default=None, help='Detector NMS IoU threshold.'),
        click.option('--detector-level', default=None, help="Detector model level, e.g. s or n (imgutils' level)."),
        click.option('--detector-version', default=None, help="Detector model version, e.g. v1.4 (imgutils' version)."),
        click.option('--batch-size', type=click.IntRange(min=1), default=None,
                     help='Face crops per forward pass, pooled across images (default: 2 on CPU, 32 on GPU).'),
        click.option('--workers', type=click.IntRange(min=1), default=None,
                     help='Threads decoding, cropping and preprocessing ahead of the classifier '
                          '(default: 2 on CPU, 8 on GPU).'),
        click.option('--quiet', '-q', is_flag=True, help='No progress bar and no summary.'),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _scoring(kwargs) -> dict:
    """The loaded detect-then-score object of the scoring options, and the pipeline's own options."""
    faces = load_face_quality_detector(
        kwargs.pop('model_name'), revision=kwargs.pop('revision'), backend=kwargs.pop('backend'),
        device=kwargs.pop('device'), precision=kwargs.pop('precision'), detector=kwargs.pop('detector'),
        crop=kwargs.pop('crop'), margin=kwargs.pop('margin'), conf_threshold=kwargs.pop('conf_threshold'),
        iou_threshold=kwargs.pop('iou_threshold'), level=kwargs.pop('detector_level'),
        version=kwargs.pop('detector_version'),
    )
    return dict(faces=faces, batch_size=kwargs.pop('batch_size'), workers=kwargs.pop('workers'))


class Progress:
    """A progress bar on a terminal (images/s, faces found), then a summary on stderr."""

    def __init__(self, total: int, quiet: bool, done_before: int = 0):
        self.quiet = quiet
        self.started = time.perf_counter()
        self.images = 0
        self.faces = 0
        self.failed: List[str] = []
        self.labels: Counter = Counter()
        self.done_before = done_before
        self.bar = None
        if not quiet and sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, unit='img', dynamic_ncols=True, file=sys.stderr)

    def update(self, result) -> None:
        self.images += 1
        self.faces += len(result.faces)
        self.labels.update(face.label for face in result.faces)
        if result.error is not None:
            self.failed.append(result.image.path)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(faces=self.faces, failed=len(self.failed), refresh=False)

    def summary(self, interrupted: bool = False) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.quiet:
            return
        seconds = time.perf_counter() - self.started
        rate = self.images / seconds if seconds > 0 else 0.0
        lines = [
            f'{"Interrupted" if interrupted else "Done"}: {self.images} images in {seconds:.1f} s '
            f'({rate:.1f} images/s), {self.faces} faces'
            + (f'; {self.done_before} images skipped, already in the output' if self.done_before else ''),
            '  faces per class: ' + (', '.join(f'{k} {v}' for k, v in sorted(self.labels.items())) or 'none'),
            f'  failed: {len(self.failed)}' + (''.join(f'\n    {path}' for path in self.failed[:20])
                                                + (f'\n    ... and {len(self.failed) - 20} more'
                                                   if len(self.failed) > 20 else '') if self.failed else ''),
        ]
        click.echo('\n'.join(lines), err=True)

    def exit_code(self) -> int:
        return EXIT_SOME_FAILED if self.failed else EXIT_OK


def _run(images, options, keep_images=False) -> Iterator:
    yield from score_images_with(images=images, keep_images=keep_images, **options)


def _visualize(result, directory: str) -> None:
    target = os.path.join(directory, os.path.splitext(result.image.relative_path)[0] + '.png')
    os.makedirs(os.path.dirname(target) or '.', exist_ok=True)
    visualize_face_quality(result.decoded, result.faces).save(target)


@click.group(context_settings={'help_option_names': ['-h', '--help']})
@click.version_option(__version__, '--version', prog_name='imgutils-facequal')
def main():
    """Score how good anime faces are (poor, ok, good, excellent), over folders of images.

    Exit codes: 0 all done; 1 some inputs failed (see their error rows); 2 usage error;
    3 a model, backend or plugin is not available; 130 interrupted (rerun to resume).
    """


@main.command()
@click.argument('paths', nargs=-1, required=True)
@click.option('--output', '-o', type=click.Path(dir_okay=False), default=None,
              help='Output file; rerunning with the same file skips images already in it. Default: stdout.')
@click.option('--format', 'fmt', type=click.Choice(['jsonl', 'csv']), default=None,
              help='Output format (default: from the output file name, else jsonl).')
@click.option('--visualize', type=click.Path(file_okay=False), default=None,
              help='Also write each image with its faces boxed and labelled to this folder.')
@scoring_options
@exit_codes()
def score(paths, output, fmt, visualize, quiet, **kwargs):
    """Score every face of every image: one row per face, one per image without a face.

    PATHS are files, folders (searched recursively for images) and globs.
    """

    fmt = fmt or ('csv' if output and output.lower().endswith('.csv') else 'jsonl')
    images = find_images(paths)
    done = completed_images(output, fmt) if output else set()
    todo = [item for item in images if item.path not in done]
    options = _scoring(kwargs)  # the model loads before any image, so one that cannot be had fails fast
    classes = options['faces'].classifier.classes
    progress = Progress(len(todo), quiet, done_before=len(images) - len(todo))
    stream = open(output, 'a', encoding='utf-8', newline='') if output else sys.stdout
    interrupted = False
    try:
        writer = ResultWriter(stream, fmt, classes, write_header=not output or stream.tell() == 0)
        for result in _run(todo, options, keep_images=bool(visualize)):
            writer.write(result)
            if visualize and result.error is None:
                _visualize(result, visualize)
            progress.update(result)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if output:
            stream.close()
    _finish(progress, interrupted)


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


@main.command(name='filter')
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
    options = _scoring(kwargs)
    progress = Progress(len(images), quiet or dry_run)
    kept = 0
    interrupted = False
    verb = {'copy': 'copy', 'hardlink': 'hard-link', 'move': 'move'}[mode]
    try:
        for result in _run(images, options):
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
    _finish(progress, interrupted, None if quiet else (
        f'{"Would keep" if dry_run else "Kept"} {kept} of {progress.images} images'
        f'{"" if dry_run else f" ({verb} to {out_dir})"}.'))


@main.command()
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
    options = _scoring(kwargs)
    progress = Progress(len(images), quiet)
    written = 0
    interrupted = False
    try:
        for result in _run(images, options, keep_images=True):
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
    _finish(progress, interrupted, None if quiet else f'Wrote {written} crops to {out_dir}.')


@main.command()
@click.option('--json', 'as_json', is_flag=True, help='Machine-readable output.')
def models(as_json):
    """Known models, where they resolve, and whether each is in the local cache."""
    rows = model_status()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f'{row["name"]}{"  (default)" if row["default"] else ""}')
        click.echo(f'  repo:   {row["repo_id"]}')
        click.echo(f'  use:    {row["description"]}')
        click.echo(f'  status: {row["status"]}')


@main.command()
@click.argument('model_names', nargs=-1)
@click.option('--detectors/--no-detectors', default=True, show_default=True,
              help="Also fetch imgutils' face and head detector models.")
@click.option('--revision', default=None, help='Hub revision of the models.')
def download(model_names, detectors, revision):
    """Fetch models into the Hugging Face cache for later offline use (default: the default model)."""
    failed = False
    for name in model_names or (DEFAULT_MODEL,):
        try:
            for line in download_model(name, revision=revision):
                click.echo(line)
        except FaceQualityError as err:
            click.echo(f'Error: {err}', err=True)
            failed = True
    if detectors:
        try:
            for line in download_detectors():
                click.echo(line)
        except FaceQualityError as err:
            click.echo(f'Error: {err}', err=True)
            failed = True
    sys.exit(EXIT_UNAVAILABLE if failed else EXIT_OK)


@main.command()
@exit_codes()
def plugins():
    """Registered detectors and taggers, with the plugins that gave them."""
    click.echo('Plugins:')
    for name in list_plugins():
        click.echo(f'  {name}')
    for title, items in (('Detectors', list_detectors()), ('Taggers', list_taggers())):
        click.echo(f'{title}:')
        for item in items:
            click.echo(f'  {item["name"]:<16} {item["plugin"]}')
            if item['description']:
                click.echo(f'  {"":<16} {item["description"]}')


@main.command()
@click.argument('model_name', default=DEFAULT_MODEL)
@click.option('--out', 'output_dir', type=click.Path(file_okay=False), default=None,
              help='Target folder (default: the exports cache, where the same model name finds it).')
@click.option('--revision', default=None, help='Hub revision.')
@click.option('--overwrite', is_flag=True, help='Replace an existing export.')
@click.option('--atol', type=click.FloatRange(min=0), default=CHECK_TOLERANCE, show_default=True,
              help='Largest allowed torch/ONNX probability difference in the check.')
@click.option('--literal', is_flag=True,
              help='Trace the model as it is, without the exact speed rewrites of MetaFormer layers.')
@exit_codes()
def export(model_name, output_dir, revision, overwrite, atol, literal):
    """Export a model to a local ONNX folder, checked against torch (needs the torch extra).

    Exporting a published model that has its own model.onnx is worth it too: for the
    MetaFormer models the export (used from then on under the same model name) runs faster.
    """
    click.echo(export_onnx(model_name, output_dir=output_dir, revision=revision, overwrite=overwrite, atol=atol,
                           rewrite=not literal))


@main.command(name='eval-crops')
@click.option('--images', 'images_dir', type=click.Path(file_okay=False, exists=True), default=None,
              help='Folder of labelled images (with --labels).')
@click.option('--labels', 'labels_path', type=click.Path(dir_okay=False, exists=True), default=None,
              help='CSV or JSON Lines file: image, label and head box per row (with --images).')
@click.option('--dataset', default=None, help='A Hugging Face data set instead: hub name or local folder.')
@click.option('--split', default='test', show_default=True, help='Split of --dataset.')
@click.option('--dataset-revision', default=None, help='Hub revision of --dataset.')
@click.option('--model', 'models', multiple=True, default=(DEFAULT_MODEL,), show_default=True,
              help='Model to evaluate; repeat for several (scored on identical crops).')
@click.option('--settings', default=None,
              help='Crop settings, e.g. "full,loose_2x,head_only,tight=0.1" (default: the card\'s seven).')
@click.option('--seed', type=int, default=0, show_default=True, help='Seed of the per-image crop draws.')
@click.option('--limit', type=click.IntRange(min=1), default=None, help='Evaluate only the first N images.')
@click.option('--image-column', default='image', show_default=True)
@click.option('--label-column', default='label', show_default=True)
@click.option('--head-column', default='head_bbox', show_default=True,
              help='Column holding [x0, y0, x1, y1] head boxes.')
@click.option('--head-columns', default='head_x0,head_y0,head_x1,head_y1', show_default=True,
              help='Or four columns holding the head box.')
@click.option('--head-detector', default='head', show_default=True,
              help='Detector giving head boxes to images that have none.')
@click.option('--backend', type=click.Choice(BACKENDS), default=DEFAULT_BACKEND, show_default=True)
@click.option('--device', default=None)
@click.option('--batch-size', type=click.IntRange(min=1), default=None,
              help='Crops per forward pass (default: 2 on CPU, 32 on GPU).')
@click.option('--out', 'out_dir', type=click.Path(file_okay=False), default=None,
              help='Write report.md, report.json and macro_f1.png here.')
@click.option('--quiet', '-q', is_flag=True, help='No progress bar.')
@exit_codes(OSError)
def eval_crops(images_dir, labels_path, dataset, split, dataset_revision, models, settings, seed, limit,
               image_column, label_column, head_column, head_columns, head_detector, backend, device, batch_size,
               out_dir, quiet):
    """The model card's crop-robustness analysis: macro-F1 from full frames to head-only crops.

    Prints the card's table (markdown); --out also writes every figure as JSON and a plot.
    """
    if (dataset is None) == (images_dir is None or labels_path is None):
        raise click.UsageError('Give either --images and --labels, or --dataset.')
    try:
        chosen = parse_settings(settings) if settings else list(DEFAULT_SETTINGS)
    except ValueError as err:
        raise click.UsageError(str(err))
    columns = [name.strip() for name in head_columns.split(',')] if head_columns else None
    if dataset is not None:
        data = read_hf_dataset(dataset, split=split, image_column=image_column, label_column=label_column,
                               head_column=head_column, head_columns=columns, revision=dataset_revision)
    else:
        data = read_labelled_folder(images_dir, labels_path, image_column=image_column,
                                    label_column=label_column, head_column=head_column, head_columns=columns)
    report = evaluate_crop_robustness(data, models=models, settings=chosen, seed=seed, batch_size=batch_size,
                                      limit=limit, backend=backend, device=device, head_detector=head_detector,
                                      progress=False if quiet else None)
    click.echo(report.to_markdown())
    if out_dir:
        for path in report.save(out_dir).values():
            click.echo(f'wrote {path}', err=True)


if __name__ == '__main__':  # pragma: no cover
    main()
