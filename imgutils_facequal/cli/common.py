"""What every command shares: the scoring options, progress and summary, and the exit codes."""
import dataclasses
import errno
import functools
import importlib.util
import logging
import math
import os
import sys
import time
import warnings
from collections import Counter
from typing import List, Optional, Sequence

import click

from ..atomic import write_new_file
from ..backends import FaceQualityClassifier
from ..curate import output_stem
from ..errors import DetectionError, FaceQualityError, InputNotFoundError, UnknownModelError
from ..models import resolve_model
from ..plugins import UnknownPluginNameError, get_detector
from ..scoring import load_face_quality_detector
from ..settings import PRESETS, SETTING_NAMES, ScoringSettings, check_setting
from ..store import read_scores
from ..visualize import visualization_suffix, visualize_face_quality, write_visualization
from ..wording import plural

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
#: A reader that closed the pipe (``| head``): what a shell reports for a command ended by SIGPIPE.
EXIT_CLOSED_PIPE = 141


def fail(message: str, code: int = EXIT_UNAVAILABLE):
    click.echo(f'Error: {message}', err=True)
    sys.exit(code)


def closed_pipe(error: BaseException) -> bool:
    """Whether ``error`` (or what it was raised from) is a write to a pipe whose reader has gone (``| head``)."""
    while error is not None:
        if isinstance(error, BrokenPipeError) or (isinstance(error, OSError) and error.errno == errno.EPIPE):
            return True
        if os.name == 'nt' and isinstance(error, OSError) and error.errno == errno.EINVAL and _stdout_gone():
            return True
        error = error.__cause__ or error.__context__
    return False


def _stdout_gone() -> bool:
    """Whether stdout can no longer be written. Windows reports a write to a pipe whose reader has gone as
    EINVAL, which also means other things (a file name Windows refuses), so stdout itself is tried."""
    try:
        sys.stdout.flush()
    except OSError:
        return True
    return False


def end_quietly_on_closed_pipe():
    """End the command without a word when the reader of stdout has gone, as Python's documentation advises:
    stdout is pointed at the null device, so flushing it at exit raises nothing more."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # a stdout with no file descriptor (a test's): nothing to point
        pass
    sys.exit(EXIT_CLOSED_PIPE)


def print_failure(result, progress: Optional['Progress'] = None) -> None:
    """One line on stderr for an image that failed, as it fails (``-q`` or not): the file and the reason (above
    the progress bar, when one shows)."""
    line = f'failed {result.image.path}: {result.error}'
    if progress is not None and progress.bar is not None:
        progress.bar.write(line, file=sys.stderr)
    else:
        click.echo(line, err=True)


def exit_codes(*usage_errors):
    """Map what a command raises to the documented exit codes: an input that does not exist, a
    ``FileExistsError``, a ``ValueError`` (options that do not go together), a model, detector or tagger
    name that is none, and ``usage_errors`` to 2; the package's other errors (a model, backend, plugin or
    output that cannot be had) to 3; Ctrl-C (while models load, say) to 130; a reader of stdout that has
    gone (``| head``) to a quiet 141."""
    usage = (FileExistsError, ValueError, *usage_errors)

    def decorate(command):
        @functools.wraps(command)
        def run(*args, **kwargs):
            try:
                try:
                    return command(*args, **kwargs)
                except OSError as err:
                    if closed_pipe(err):
                        end_quietly_on_closed_pipe()
                    raise
            except (InputNotFoundError, UnknownModelError, UnknownPluginNameError) as err:
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


class FiniteFloatRange(click.FloatRange):
    """click's ``FloatRange``, refusing NaN and infinities (which pass its comparisons, or an open end)."""

    name = 'finite float range'

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f'{value!r} is not a finite number.', param, ctx)
        return number


def _option_type(item: dataclasses.Field):
    if 'choices' in item.metadata:
        return click.Choice(item.metadata['choices'])
    if 'range' in item.metadata:
        low, high = item.metadata['range']
        return click.IntRange(low, high) if int in getattr(item.type, '__args__', (item.type,)) else \
            FiniteFloatRange(low, high)
    return None


def _none_word(value):
    return None if isinstance(value, str) and value.lower() == 'none' else value


def _checked_setting(context, parameter, value):
    """The option's value, checked as it is parsed by the setting's own rule (`check_setting`): NaN,
    infinities and an infer size the detector cannot run at are refused here, with exit code 2."""
    if parameter.name == 'head_detector':
        value = _none_word(value)
    try:
        return check_setting(parameter.name, value)
    except ValueError as err:
        raise click.BadParameter(str(err)) from None


def _setting_option(item: dataclasses.Field):
    """The command-line option of a field of `ScoringSettings`: ``--head-infer-size`` for ``head_infer_size``
    (``--model`` for ``model_name``, as imgutils' users say it)."""
    flags = ['--model', '--model-name'] if item.name == 'model_name' else ['--' + item.name.replace('_', '-')]
    can_be_none = item.name == 'head_detector'  # the one setting whose default is a value and None a choice
    return click.option(*flags, item.name, type=_option_type(item), default=item.default,
                        show_default=item.default is not None,
                        help=item.metadata['help'] + (' "none": none.' if can_be_none else ''),
                        callback=_checked_setting)


def scoring_options(function):
    """The options every command that scores faces shares: one per field of `ScoringSettings`, under its
    name, then the pipeline's own (``--batch-size``, ``--workers``) and ``--quiet``."""
    options = _settings_options() + [
        click.option('--batch-size', type=click.IntRange(min=1), default=None,
                     help='Face crops per forward pass, pooled across images (default: 2 on CPU, 32 on GPU).'),
        click.option('--workers', type=click.IntRange(min=0), default=None,
                     help='Threads decoding, cropping and preprocessing ahead of the classifier; 0 decodes '
                          'in the main thread (default: 8 on a GPU; on a CPU 2, or 1 with two cores or fewer).'),
        click.option('--quiet', '-q', is_flag=True, callback=_quiet,
                     help='No progress, no status lines and no summary (lines about failed files still show).'),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _settings_options() -> list:
    return [_setting_option(item) for item in dataclasses.fields(ScoringSettings)] + [
        click.option('--fast', is_flag=True,
                     help='The fast preset: ' + ', '.join(f'--{name.replace("_", "-")} {value}' for name, value in
                                                          PRESETS['fast'].items())
                          + ' (one small detector pass; face boxes derived from head boxes; the classifier on '
                            'OpenVINO where the openvino extra is installed). Options given win.')]


def settings_options(function):
    """One option per field of `ScoringSettings`, under its name, and ``--fast``: for a command that scores
    but runs no pipeline (``demo``); read them back with `settings_from`."""
    for option in reversed(_settings_options()):
        function = option(function)
    return function


def given_settings(kwargs) -> dict:
    """The scoring settings the command line asks for, by name: those of ``--fast``, then the options given
    (not left at their defaults)."""
    context = click.get_current_context()
    given = {name: kwargs[name] for name in SETTING_NAMES
             if context.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT)}
    return {**(PRESETS['fast'] if kwargs.get('fast') else {}), **given}


def settings_from(kwargs) -> ScoringSettings:
    """The `ScoringSettings` of the scoring options (taken out of ``kwargs``); a value out of range, or a model or
    detector name that is none, is a usage error. The command line's defaults are the settings' own, so the
    options left out keep them."""
    settings = ScoringSettings.merged(**given_settings(kwargs))
    for name in (*SETTING_NAMES, 'fast'):
        kwargs.pop(name)
    resolve_model(settings.model_name, settings.revision)  # an unknown name is a usage error, found before any work
    for detector in {settings.detector, settings.head_detector} - {None}:
        get_detector(detector)
    return settings


def load_detector(settings: ScoringSettings):
    """The detect-then-score object of the settings, with a warning when a GPU was asked for and none runs.
    Its detectors run once on a blank image before any of the user's: a detector model that cannot be had
    fails the command at once, as the classifier does, and loading it is not counted as detection time in
    the summary (for a few images it was most of it)."""
    from PIL import Image
    faces = load_face_quality_detector(settings=settings)
    warn_about_device(faces.classifier, settings.device)
    try:
        faces.locator.locate(Image.new('RGB', (64, 64)))
    except DetectionError:  # a detector that fails on a blank image: said per image, if it fails on those
        pass
    return faces


def show_status_on_stderr() -> None:
    """The package's status lines (``logging`` at INFO, such as a first load's graph rewrite) and Python's
    warnings on stderr, one line each, without the source lines Python would print."""
    class StderrHandler(logging.StreamHandler):
        """Writes to the ``sys.stderr`` of the moment: a caller that swaps it (click's ``CliRunner``, a second
        run of `main` in one process) gets the lines, not a stream of an earlier call."""
        stream = property(lambda self: sys.stderr, lambda self, value: None)

    logger = logging.getLogger('imgutils_facequal')
    if not any(getattr(handler, 'imgutils_facequal', False) for handler in logger.handlers):
        handler = StderrHandler()
        handler.setFormatter(logging.Formatter('imgutils-facequal: %(message)s'))
        handler.imgutils_facequal = True
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)  # each run starts loud; -q (parsed after this) lowers it for that run
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


def read_saved_scores(sources):
    """The saved scores of files, globs or folders of shards (`imgutils_facequal.store.read_scores`); a source
    that is missing or holds no saved scores is a usage error."""
    try:
        return read_scores(sources)
    except FileNotFoundError as err:
        fail(str(err), EXIT_USAGE)
    except (OSError, ValueError, KeyError) as err:
        fail(f'cannot read the scores: {err}', EXIT_USAGE)


class Progress:
    """Progress on stderr, then a summary: a bar on a terminal; with no terminal (nohup, Slurm), a log
    line every ``log_interval`` seconds (images done, rate, time left). ``-q`` shows neither, nor the
    summary; lines about failed files are printed all the same."""

    def __init__(self, total: int, quiet: bool, done_before: int = 0, classes: Sequence[str] = (),
                 log_interval: float = 30.0, bar: bool = True, settings: Optional[ScoringSettings] = None,
                 timed: bool = True, classifier: Optional[FaceQualityClassifier] = None):
        self.quiet = quiet
        self.classifier = classifier  # the one that ran, for the summary's advice
        self.timed = timed  # False: no time and rate in the summary (reading saved rows takes none worth telling)
        self.total = total
        self.started = time.perf_counter()
        self.images = 0
        self.faces = 0
        self.failed: List[str] = []
        self.labels: Counter = Counter()
        self.seconds: Counter = Counter()
        self.settings = settings
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
        self.seconds.update(result.seconds)
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
                           f'{plural(self.faces, "face")}, {len(self.failed)} failed, about {left / 60:.1f} min left',
                           err=True)

    def _quality_line(self) -> str:
        if not self.qualities:
            return '  quality: no faces'
        import statistics
        ordered = sorted(self.qualities)
        quartiles = statistics.quantiles(ordered, n=4) if len(ordered) > 1 else [ordered[0]] * 3
        return (f'  quality: mean {statistics.fmean(ordered):.3f}, quartiles {quartiles[0]:.3f} / '
                f'{quartiles[1]:.3f} / {quartiles[2]:.3f}')

    def _time_lines(self) -> List[str]:
        """Where the time went, per image and stage (busy time: the stages overlap), and what would help."""
        if not self.images or not self.seconds:
            return []
        stages = ('decoding', 'detection', 'classification')
        per_image = {stage: self.seconds[stage] / self.images for stage in stages}
        lines = ['  time per image: ' + ', '.join(f'{stage} {value:.3f} s' for stage, value in per_image.items())
                 + ' (busy time of each stage; they overlap)']
        busiest = max(per_image, key=per_image.get)
        fast = self.settings is not None and ScoringSettings.merged(self.settings, preset='fast') == self.settings
        hint = {'detection': 'detection takes the most time: ' + (
                    'a GPU (--device cuda) is what speeds it up further' if fast else
                    '--fast runs one small detector pass instead (see the performance page for what it changes)'),
                'classification': 'classification takes the most time: ' + self._classifier_advice(),
                'decoding': 'decoding takes the most time: more --workers, or images on a faster disk'}[busiest]
        return lines + [f'  {hint}']

    def _classifier_advice(self) -> str:
        if self.classifier is None or self.classifier.backend != 'onnx' or self.classifier.runs_on_gpu:
            return 'a GPU (--device cuda) is what speeds it up'
        install = '' if importlib.util.find_spec('openvino') else " after pip install 'imgutils-facequal[openvino]'"
        return ('a GPU (--device cuda) speeds it up; on a CPU, OpenVINO may too: --backend auto' + install
                + ', which --fast also sets (see the performance page)')

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
            f'{"Interrupted" if interrupted else "Done"}: {plural(self.images, "image")}'
            + (f' in {seconds:.1f} s ({rate:.1f} images/s)' if self.timed else '')
            + f', {plural(self.faces, "face")}{skipped}'
            + (f'; {plural(self.retried, "image")} that failed before scored again' if self.retried else ''),
            '  faces per class: ' + (', '.join(f'{name} {self.labels[name]}' for name in classes) or 'none'),
            self._quality_line(),
            *self._time_lines(),
            f'  failed: {len(self.failed)}' + (''.join(f'\n    {path}' for path in self.failed[:20])
                                                + (f'\n    ... and {len(self.failed) - 20} more'
                                                   if len(self.failed) > 20 else '') if self.failed else ''),
        ]
        click.echo('\n'.join(lines), err=True)

    def exit_code(self) -> int:
        return EXIT_SOME_FAILED if self.failed else EXIT_OK


def save_visualization(result, directory: str, stem: Optional[str] = None, fmt: str = 'png',
                       max_side: Optional[int] = None) -> None:
    """Draw an image's faces to ``directory`` as ``{stem}.png`` (``.jpg``, ``.webp`` for those ``fmt``), the
    long side at most ``max_side``: ``stem`` from `imgutils_facequal.curate.output_stems` of the whole run
    (``a/x.png`` and ``b/x.png`` get ``a/x`` and ``b/x``), else `output_stem` (``x.png`` and ``x.jpg`` side
    by side get ``x.png.png`` and ``x.jpg.png``). An existing file is never overwritten (the same drawing
    again is skipped silently, another one with a warning)."""
    target = os.path.join(directory, (stem or output_stem(result.image)) + visualization_suffix(fmt))
    drawing = visualize_face_quality(result.decoded, result.faces, max_side=max_side)
    try:
        write_new_file(target, lambda temp: write_visualization(drawing, temp, fmt))
    except FileExistsError as err:
        click.echo(f'not drawing {result.image.path}: {err}', err=True)
