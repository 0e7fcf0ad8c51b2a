"""What every command shares: the scoring options, progress and summary, and the exit codes."""
import functools
import os
import sys
import time
from collections import Counter
from typing import Iterator, List, Optional

import click

from ..backends import BACKENDS, DEFAULT_BACKEND, PRECISIONS
from ..curate import output_stem, write_new_file
from ..detect import visualize_face_quality
from ..errors import FaceQualityError
from ..models import DEFAULT_MODEL
from ..pipeline import score_images_with
from ..scoring import CROP_MODES, DEFAULT_MARGIN, load_face_quality_detector

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def fail(message: str, code: int = EXIT_UNAVAILABLE):
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
                fail(str(err))
            except usage as err:
                fail(str(err), EXIT_USAGE)
        return run
    return decorate


def finish(progress, interrupted: bool, message: Optional[str] = None):
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


def scoring(kwargs) -> dict:
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


def run_pipeline(images, options, keep_images=False) -> Iterator:
    yield from score_images_with(images=images, keep_images=keep_images, **options)


def save_visualization(result, directory: str) -> None:
    """Draw an image's faces to ``directory`` as PNG, named by `imgutils_facequal.curate.output_stem`
    (``x.png`` and ``x.jpg`` side by side get ``x.png.png`` and ``x.jpg.png``); an existing file is
    never overwritten (the same drawing again is skipped silently, another one with a warning)."""
    target = os.path.join(directory, output_stem(result.image) + '.png')
    drawing = visualize_face_quality(result.decoded, result.faces)
    try:
        write_new_file(target, lambda temp: drawing.save(temp, format='PNG'))
    except FileExistsError as err:
        click.echo(f'not drawing {result.image.path}: {err}', err=True)
