"""What every command shares: the scoring options, progress and summary, and the exit codes."""
import functools
import logging
import os
import sys
import time
import warnings
from collections import Counter
from typing import Iterator, List, Optional, Sequence

import click

from ..backends import BACKENDS, DEFAULT_BACKEND, PRECISIONS
from ..curate import output_stem, write_new_file
from ..detect import visualize_face_quality
from ..errors import FaceQualityError, InputNotFoundError
from ..models import DEFAULT_MODEL
from ..pipeline import score_images_with
from ..rows import read_provenance, read_rows
from ..scoring import CROP_MODES, DEFAULT_MARGIN, HEAD_LOCALISATIONS, load_face_quality_detector

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def fail(message: str, code: int = EXIT_UNAVAILABLE):
    click.echo(f'Error: {message}', err=True)
    sys.exit(code)


def exit_codes(*usage_errors):
    """Map what a command raises to the documented exit codes: an input that does not exist, a
    ``FileExistsError``, a ``ValueError`` (options that do not go together) and ``usage_errors`` to 2;
    the package's own errors (a model, backend, plugin or output that cannot be had) to 3; Ctrl-C
    (while models load, say) to 130."""
    usage = (FileExistsError, ValueError, *usage_errors)

    def decorate(command):
        @functools.wraps(command)
        def run(*args, **kwargs):
            try:
                return command(*args, **kwargs)
            except InputNotFoundError as err:
                fail(str(err), EXIT_USAGE)
            except FaceQualityError as err:
                fail(str(err))
            except usage as err:
                fail(str(err), EXIT_USAGE)
            except KeyboardInterrupt:
                fail('interrupted.', EXIT_INTERRUPTED)
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
        click.option('--head-localisation', type=click.Choice(HEAD_LOCALISATIONS), default=HEAD_LOCALISATIONS[0],
                     show_default=True,
                     help='paired: the face detector, then the head detector; heads: the head detector alone, face '
                          'boxes derived from heads (one detector pass per image; changes the boxes).'),
        click.option('--head-level', default=None, help="Head detector model level, e.g. n (faster, coarser)."),
        click.option('--head-infer-size', type=click.IntRange(min=32), default=None,
                     help='Run the head detector at this square size, a multiple of 32 (e.g. 320: a quarter of '
                          "the work of imgutils' 640; changes the boxes)."),
        click.option('--batch-size', type=click.IntRange(min=1), default=None,
                     help='Face crops per forward pass, pooled across images (default: 2 on CPU, 32 on GPU).'),
        click.option('--workers', type=click.IntRange(min=1), default=None,
                     help='Threads decoding, cropping and preprocessing ahead of the classifier '
                          '(default: 2 on CPU, 8 on GPU).'),
        click.option('--quiet', '-q', is_flag=True, callback=_quiet,
                     help='No progress, no status lines and no summary (lines about failed files still show).'),
    ]
    for option in reversed(options):
        function = option(function)
    return function


#: The scoring options that configure the detector, by option name: their `load_face_quality_detector` names.
DETECTOR_OPTIONS = {name: name for name in (
    'model_name', 'revision', 'backend', 'device', 'precision', 'detector', 'crop', 'margin', 'conf_threshold',
    'iou_threshold', 'head_localisation', 'head_level', 'head_infer_size')}
DETECTOR_OPTIONS.update(detector_level='level', detector_version='version')


def detector_settings(kwargs) -> dict:
    """The scoring options as keyword arguments of `load_face_quality_detector` (taken out of ``kwargs``)."""
    return {target: kwargs.pop(name) for name, target in DETECTOR_OPTIONS.items()}


def scoring(kwargs) -> dict:
    """The loaded detect-then-score object of the scoring options, and the pipeline's own options."""
    faces = load_face_quality_detector(**detector_settings(kwargs))
    return dict(faces=faces, batch_size=kwargs.pop('batch_size'), workers=kwargs.pop('workers'))


def show_status_on_stderr() -> None:
    """The package's status lines (``logging`` at INFO, such as a first load's graph rewrite) and Python's
    warnings on stderr, one line each, without the source lines Python would print."""
    logger = logging.getLogger('imgutils_facequal')
    if not any(getattr(handler, 'imgutils_facequal', False) for handler in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter('imgutils-facequal: %(message)s'))
        handler.imgutils_facequal = True
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    warnings.formatwarning = lambda message, category, *_, **__: f'Warning: {message}\n'


def _quiet(context, parameter, quiet: bool) -> bool:
    if quiet:  # status lines off; warnings and errors still show
        logging.getLogger('imgutils_facequal').setLevel(logging.WARNING)
    return quiet


def warn_about_device(classifier, device: Optional[str]) -> None:
    """One line when a GPU was asked for and the model runs on the CPU."""
    if device and device.startswith('cuda') and not classifier.runs_on_gpu:
        hint = ('onnxruntime has no CUDA provider here: pip install onnxruntime-gpu' if classifier.backend == 'onnx'
                else 'torch sees no GPU' if classifier.backend == 'transformers' else 'it runs on the CPU only')
        click.echo(f'Warning: --device {device} was asked for, but the model runs on the CPU ({hint}).', err=True)


def read_saved_scores(scores: str):
    """The rows of an output of ``score``, and the provenance beside it (``None`` if none); a file that is
    missing or not such an output is a usage error."""
    try:
        return read_rows(scores), read_provenance(scores)
    except FileNotFoundError:
        fail(f'{scores} does not exist; write it first with `imgutils-facequal score PATHS -o {scores}`.', EXIT_USAGE)
    except (OSError, ValueError, KeyError) as err:
        fail(f'{scores} cannot be read as scores: {err}', EXIT_USAGE)


def plural(count: int, noun: str) -> str:
    """``1 image``, ``2 images``."""
    return f'{count} {noun}{"" if count == 1 else "s"}'


class Progress:
    """Progress on stderr, then a summary: a bar on a terminal; with no terminal (nohup, Slurm), a log
    line every ``log_interval`` seconds (images done, rate, time left). ``-q`` shows neither, nor the
    summary; lines about failed files are printed all the same."""

    def __init__(self, total: int, quiet: bool, done_before: int = 0, classes: Sequence[str] = (),
                 log_interval: float = 30.0, bar: bool = True):
        self.quiet = quiet
        self.total = total
        self.started = time.perf_counter()
        self.images = 0
        self.faces = 0
        self.failed: List[str] = []
        self.labels: Counter = Counter()
        self.qualities: List[float] = []
        self.classes = list(classes)
        self.done_before = done_before
        self.retried = 0
        self.log_interval = log_interval
        self._logged = self.started
        self.bar = None
        if not quiet and bar and sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, unit='img', dynamic_ncols=True, file=sys.stderr)

    def update(self, result) -> None:
        self.images += 1
        self.faces += len(result.faces)
        self.labels.update(face.label for face in result.faces)
        self.qualities.extend(face.quality for face in result.faces)
        if result.error is not None:
            self.failed.append(result.image.path)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(faces=self.faces, failed=len(self.failed), refresh=False)
        elif not self.quiet and not sys.stderr.isatty():
            now = time.perf_counter()
            if now - self._logged >= self.log_interval:
                self._logged = now
                rate = self.images / (now - self.started)
                left = (self.total - self.images) / rate if rate > 0 else float('inf')
                click.echo(f'progress: {self.images}/{self.total} images, {rate:.2f} images/s, '
                           f'{self.faces} faces, {len(self.failed)} failed, about {left / 60:.1f} min left', err=True)

    def _quality_line(self) -> str:
        if not self.qualities:
            return '  quality: no faces'
        import statistics
        ordered = sorted(self.qualities)
        quartiles = statistics.quantiles(ordered, n=4) if len(ordered) > 1 else [ordered[0]] * 3
        return (f'  quality: mean {statistics.fmean(ordered):.3f}, quartiles {quartiles[0]:.3f} / '
                f'{quartiles[1]:.3f} / {quartiles[2]:.3f}')

    def summary(self, interrupted: bool = False) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.quiet:
            return
        seconds = time.perf_counter() - self.started
        rate = self.images / seconds if seconds > 0 else 0.0
        classes = self.classes + sorted(set(self.labels) - set(self.classes))
        skipped = (f'; {plural(self.done_before, "image")} skipped, already in the output' if self.done_before
                   else '')
        lines = [
            f'{"Interrupted" if interrupted else "Done"}: {plural(self.images, "image")} in {seconds:.1f} s '
            f'({rate:.1f} images/s), {plural(self.faces, "face")}{skipped}'
            + (f'; {plural(self.retried, "image")} that failed before scored again' if self.retried else ''),
            '  faces per class: ' + (', '.join(f'{name} {self.labels[name]}' for name in classes) or 'none'),
            self._quality_line(),
            f'  failed: {len(self.failed)}' + (''.join(f'\n    {path}' for path in self.failed[:20])
                                                + (f'\n    ... and {len(self.failed) - 20} more'
                                                   if len(self.failed) > 20 else '') if self.failed else ''),
        ]
        click.echo('\n'.join(lines), err=True)

    def exit_code(self) -> int:
        return EXIT_SOME_FAILED if self.failed else EXIT_OK


def run_pipeline(images, options, keep_images=False) -> Iterator:
    yield from score_images_with(images=images, keep_images=keep_images, **options)


def save_visualization(result, directory: str, stem: Optional[str] = None) -> None:
    """Draw an image's faces to ``directory`` as ``{stem}.png``: ``stem`` from
    `imgutils_facequal.curate.output_stems` of the whole run (``a/x.png`` and ``b/x.png`` get
    ``a/x`` and ``b/x``), else `output_stem` (``x.png`` and ``x.jpg`` side by side get
    ``x.png.png`` and ``x.jpg.png``). An existing file is never overwritten (the same drawing
    again is skipped silently, another one with a warning)."""
    target = os.path.join(directory, (stem or output_stem(result.image)) + '.png')
    drawing = visualize_face_quality(result.decoded, result.faces)
    try:
        write_new_file(target, lambda temp: drawing.save(temp, format='PNG'))
    except FileExistsError as err:
        click.echo(f'not drawing {result.image.path}: {err}', err=True)
