"""Running the command line in tests, and the folders of scenes they run it on.

`run` calls the click command in this process (click's `CliRunner`): the same parsing, output and exit
codes as the console script, without a Python start-up and the imports for each call. `run_process` runs
the real console script in a child process: for the tests where the process is the point (signals,
locks held by another process, forks, pipes, named pipes and hangs, environment variables read at
import, a fresh interpreter). Both return an object with ``returncode``, ``stdout`` and ``stderr``, and
with ``check_code`` assert the exit code and that no exception escaped (a traceback on stderr).
"""
import contextlib
import dataclasses
import inspect
import json
import logging
import os
import signal
import struct
import subprocess
import sys
import threading
import traceback
import warnings
import zlib
from typing import Optional

from tests.support.fake_hub import CLASS_COLOURS, draw_scene

SCRIPT = os.path.join(os.path.dirname(sys.executable), 'imgutils-facequal')
PROG_NAME = 'imgutils-facequal'
COLOUR_LABELS = {colour: name for name, colour in CLASS_COLOURS.items()}

#: Python's warning filters in a process started without ``-W`` (pytest installs its own around each test).
_PROCESS_WARNING_FILTERS = [('default', DeprecationWarning, '__main__'), ('ignore', DeprecationWarning, ''),
                            ('ignore', PendingDeprecationWarning, ''), ('ignore', ImportWarning, ''),
                            ('ignore', ResourceWarning, '')]


@dataclasses.dataclass
class Completed:
    """What a run of the command gave: the exit code and the text of stdout and stderr."""
    args: list
    returncode: int
    stdout: str
    stderr: str


def _check(result, check_code):
    if check_code is not None:
        assert result.returncode == check_code, (result.returncode, result.stdout[-2000:], result.stderr[-3000:])
        assert 'Traceback' not in result.stderr, result.stderr[-3000:]  # exit 1 is also what a crash gives
    return result


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Python's own `warnings.showwarning` (pytest records warnings instead of printing them)."""
    (file or sys.stderr).write(warnings.formatwarning(message, category, filename, lineno, line))


@contextlib.contextmanager
def _as_a_new_process(cwd):
    """Process-wide state as a fresh ``imgutils-facequal`` process has it, put back afterwards: the working
    directory, Python's warning filters, registry and printing, the printing of exceptions in threads and of
    unraisable ones (pytest collects both instead), and the package logger's level."""
    logger = logging.getLogger('imgutils_facequal')
    level, formatwarning, before = logger.level, warnings.formatwarning, os.getcwd()
    hooks = threading.excepthook, sys.unraisablehook
    with warnings.catch_warnings():  # also forgets which warnings were shown (each process shows them once)
        warnings.resetwarnings()
        for action, category, module in reversed(_PROCESS_WARNING_FILTERS):
            warnings.filterwarnings(action, category=category, module=module)
        warnings.showwarning = _show_warning
        threading.excepthook, sys.unraisablehook = threading.__excepthook__, sys.__unraisablehook__
        try:
            if cwd is not None:
                os.chdir(cwd)
            yield
        finally:
            os.chdir(before)
            warnings.formatwarning = formatwarning
            logger.setLevel(level)
            threading.excepthook, sys.unraisablehook = hooks


def run(*args, check_code: Optional[int] = None, cwd=None, env=None, input=None) -> Completed:
    """``imgutils-facequal ARGS`` in this process. An exception that escapes the command shows as the
    traceback a process would print on stderr, with exit code 1.

    :param env: Environment variables set for the call (for what reads them when the command runs; one
        read at import, such as huggingface_hub's, needs `run_process`).
    :param input: What the command reads on stdin (default: nothing).
    """
    from imgutils_facequal.cli import main
    argv = [str(arg) for arg in args]
    runner = _runner()
    with _as_a_new_process(cwd):
        result = runner.invoke(main, argv, input=input, env=env, prog_name=PROG_NAME, catch_exceptions=True)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += 'Traceback (most recent call last):\n' + ''.join(traceback.format_exception(*result.exc_info)[1:])
    return _check(Completed(argv, result.exit_code, result.stdout, stderr), check_code)


def _runner():
    """A `CliRunner` that keeps stderr apart and, where click can (8.4 on), also reads what is written to file
    descriptors 1 and 2 (by C extensions, say), as a process's stdout and stderr would have it."""
    from click.testing import CliRunner
    parameters = inspect.signature(CliRunner).parameters
    if 'capture' in parameters:
        return CliRunner(capture='fd')
    if 'mix_stderr' in parameters:  # click before 8.2
        return CliRunner(mix_stderr=False)
    return CliRunner()


def default_sigint():
    """For ``preexec_fn``: a shell running the suite in the background leaves SIGINT ignored, and the child
    would inherit that; Python installs its KeyboardInterrupt handler only over the default."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_process(*args, check_code: Optional[int] = None, timeout=300, cwd=None, env=None) -> Completed:
    """The console script in a child process (stdin empty)."""
    argv = [str(arg) for arg in args]
    result = subprocess.run([SCRIPT, *argv], capture_output=True, text=True, timeout=timeout,
                            stdin=subprocess.DEVNULL, cwd=cwd, env=env)
    return _check(Completed(argv, result.returncode, result.stdout, result.stderr), check_code)


def start_process(*args, **popen):
    """The console script started in a child process, for a test to signal: stdin empty, stdout dropped,
    stderr a pipe, SIGINT at its default (see `default_sigint`)."""
    options = dict(stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                   preexec_fn=default_sigint)
    options.update(popen)
    return subprocess.Popen([SCRIPT, *map(str, args)], **options)


def read_jsonl(path):
    with open(path, encoding='utf-8') as f:
        return [json.loads(line) for line in f]


def rows_by_image(path):
    """The rows of a JSON Lines output, by image."""
    counts = {}
    for row in read_jsonl(path):
        counts.setdefault(row['image'], []).append(row)
    return counts


def scene(index):
    """A frame with two or three faces whose colours (so face-crop labels) depend on index."""
    colours = [CLASS_COLOURS[name] for name in ('poor', 'ok', 'good', 'excellent')]
    heads = [(index % 4, 0, colours[index % 4]), (1, 2, colours[(index + 1) % 4])]
    bare = [(6, 6, colours[(index + 2) % 4])] if index % 2 else []
    return draw_scene((256, 256), heads=heads, bare_faces=bare)


def write_scenes(root, count):
    """``count`` scenes (see `scene`) as ``root/0.png``, ``root/1.png``...; ``root``."""
    root.mkdir(parents=True)
    for index in range(count):
        scene(index)[0].save(root / f'{index}.png')
    return root


def huge_png(path, width=40000, height=40000):
    """A PNG whose header claims more pixels than Pillow's decompression-bomb limit allows."""
    def chunk(kind, data):
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff)
    header = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', zlib.compress(b'\0' * 64))
                     + chunk(b'IEND', b''))
