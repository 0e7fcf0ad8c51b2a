"""Hardening, third round (issue 33): nothing hangs, failures show as they happen, a closed pipe ends quietly,
a missing listed file fails alone, and the small things a new user met.

Each test names the item of the issue it covers; each failed before its fix.
"""
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from imgutils_facequal.errors import ImageLoadError
from imgutils_facequal.images import load_rgb_image
from imgutils_facequal.plugins import ENTRY_POINT_GROUP, PLUGINS_ENV
from tests.support.cli import SCRIPT, read_jsonl, run, run_process, start_process, write_scenes


@pytest.fixture
def frames(tmp_path):
    """Three scenes of two or three faces each."""
    return write_scenes(tmp_path / 'frames', 3)


def named_pipe(path):
    """A named pipe at ``path`` (POSIX only: Windows has no named pipes in the file system)."""
    if not hasattr(os, 'mkfifo'):
        pytest.skip('named pipes in the file system are POSIX-only')
    os.mkfifo(path)
    return path


# 14. a named pipe where an image was: refused before it is opened, in score, report and crop --scores
def test_a_named_pipe_fails_as_an_image_in_score_report_and_crop(frames, tmp_path):
    scores = tmp_path / 'scores.jsonl'
    run('score', frames, '-o', scores, check_code=0)
    os.remove(frames / '1.png')
    named_pipe(frames / '1.png')
    for args in (['report', scores, '-o', tmp_path / 'report'],
                 ['crop', '--scores', scores, '--out', tmp_path / 'crops'],
                 ['score', frames, '-o', tmp_path / 'again.jsonl']):
        result = run_process(*args, check_code=1, timeout=120)  # before: each waited for a writer for ever
        assert '1.png' in result.stderr and 'not a regular file (a named pipe)' in result.stderr, (args, result.stderr)
    rows = read_jsonl(tmp_path / 'again.jsonl')
    assert [row['image'] for row in rows if row.get('error')] == [str(frames / '1.png')]
    assert {row['image'] for row in rows if not row.get('error')} == {str(frames / '0.png'), str(frames / '2.png')}
    assert len(list((tmp_path / 'crops').iterdir())) > 0  # the other images' crops were written


def test_load_rgb_image_refuses_a_folder_without_opening_it(tmp_path):
    with pytest.raises(ImageLoadError, match=r'not a regular file \(a folder\)'):
        load_rgb_image(str(tmp_path))


# 15. one Ctrl-C ends a run within seconds while a slow detector call is running
SLOW_PLUGIN = textwrap.dedent('''
    """A detector that takes minutes on images 300 pixels wide, and finds the whole image at once on the others."""
    import os
    import time
    from imgutils_facequal import hookimpl


    def slow_whole_image(image, **options):
        width, height = image.size
        if width == 300:
            open(os.environ['SLOW_DETECTOR_STARTED'], 'w').close()
            time.sleep(300)
        return [((0, 0, width, height), 'face', 0.99)]


    @hookimpl
    def register_detectors(register):
        register('slow_whole_image', slow_whole_image, 'minutes on 300-pixel-wide images')
''')


@pytest.fixture
def slow_detector_env(tmp_path):
    """The environment of a process with a plugin installed (a module and its .dist-info) whose detector hangs."""
    site = tmp_path / 'site'
    info = site / 'facequal_slow_plugin-1.0.dist-info'
    info.mkdir(parents=True)
    (site / 'facequal_slow_plugin.py').write_text(SLOW_PLUGIN)
    (info / 'METADATA').write_text('Metadata-Version: 2.1\nName: facequal-slow-plugin\nVersion: 1.0\n')
    (info / 'entry_points.txt').write_text(f'[{ENTRY_POINT_GROUP}]\nfacequal_slow = facequal_slow_plugin\n')
    (info / 'RECORD').write_text('')
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(site)] + sys.path),
                **{PLUGINS_ENV: 'facequal-slow-plugin', 'SLOW_DETECTOR_STARTED': str(tmp_path / 'started')})


@pytest.mark.parametrize('command, workers', [('score', 1), ('score', 3), ('filter', 2)])
def test_one_ctrl_c_ends_a_run_while_the_detector_is_busy(frames, tmp_path, slow_detector_env, command, workers):
    from PIL import Image
    Image.new('RGB', (300, 256), (200, 120, 90)).save(frames / 'z-slow.png')
    output = tmp_path / ('scores.jsonl' if command == 'score' else 'kept')
    process = start_process(command, frames, '-o', output, '--detector', 'slow_whole_image', '--batch-size', '1',
                            '--workers', workers, *(['--min-quality', '0'] if command == 'filter' else []),
                            env=slow_detector_env)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not os.path.exists(slow_detector_env['SLOW_DETECTOR_STARTED']):
            assert process.poll() is None, process.stderr.read().decode()[-3000:]
            time.sleep(0.05)
        time.sleep(0.5)
        sent = time.time()
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)  # before: the summary, then five minutes of the detector call
        stderr = stderr.decode()
        assert process.returncode == 130 and time.time() - sent < 10, stderr[-3000:]
        assert 'Interrupted' in stderr and 'Traceback' not in stderr and 'Exception ignored' not in stderr, stderr
    finally:
        process.kill()
        process.wait()
    kept = ({row['image'] for row in read_jsonl(output)} if command == 'score' else
            {str(frames / path.name) for path in output.iterdir()})
    assert kept == {str(frames / f'{index}.png') for index in range(3)}  # what was done before Ctrl-C stays


# 27. each failure is printed as it happens, with -q too
def test_failures_are_printed_as_they_happen_with_and_without_quiet(frames, tmp_path):
    (frames / '1-broken.png').write_bytes(b'not an image')
    quiet = run('score', frames, '-q', check_code=1)
    lines = quiet.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f'failed {frames / "1-broken.png"}: Cannot read image'), lines
    loud = run('score', frames, '-o', tmp_path / 'scores.jsonl', check_code=1)
    failure = loud.stderr.index(f'failed {frames / "1-broken.png"}: Cannot read image')
    assert failure < loud.stderr.index('Done:')  # before: named only in the summary, and not at all with -q


# 30. a reader that closes the pipe (`score | head`) ends the run quietly
def test_a_closed_pipe_on_stdout_ends_quietly(tmp_path):
    root = write_scenes(tmp_path / 'many', 24)
    process = subprocess.Popen([SCRIPT, 'score', str(root), '--batch-size', '1', '--workers', '1'],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert process.stdout.readline()  # like `head -n 1`: one row, then the pipe is closed
        process.stdout.close()
        stderr = process.stderr.read().decode()
        process.wait(timeout=120)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 141, stderr[-3000:]
    assert stderr.count('\n') <= 1 and 'space' not in stderr and 'Traceback' not in stderr, stderr
    assert 'Exception ignored' not in stderr and 'Error' not in stderr, stderr


def test_on_windows_a_closed_pipe_is_einval_from_stdout_only(monkeypatch):
    """Windows reports a write to a pipe whose reader has gone as EINVAL (the pipe itself cannot be made to
    fail that way here, so a stdout that fails as Windows' does stands in for it); EINVAL from anything else,
    a file name Windows refuses, say, is a real error."""
    import errno
    import io
    import os as os_module
    from imgutils_facequal.cli.common import closed_pipe

    class WindowsClosedPipe(io.StringIO):
        def flush(self):
            raise OSError(errno.EINVAL, 'Invalid argument')
    einval = OSError(errno.EINVAL, 'Invalid argument')
    monkeypatch.setattr(os_module, 'name', 'nt')
    assert not closed_pipe(einval)  # stdout still writes: not a closed pipe
    monkeypatch.setattr('sys.stdout', WindowsClosedPipe())
    assert closed_pipe(einval) and closed_pipe(BrokenPipeError())
    monkeypatch.setattr(os_module, 'name', 'posix')
    assert not closed_pipe(einval)


# 31. --files-from: a listed path that is missing gets an error row naming the list and the line
def test_a_missing_listed_path_gets_an_error_row_and_the_run_goes_on(frames, tmp_path):
    listing = tmp_path / 'list.txt'
    listing.write_text(f'# frames\n{frames / "0.png"}\n{frames / "gone.png"}\n\n{frames / "2.png"}\n')
    output = tmp_path / 'scores.jsonl'
    result = run('score', '--files-from', listing, '-o', output, check_code=1)  # before: exit 2, nothing scored
    rows = read_jsonl(output)
    errors = [row for row in rows if row.get('error')]
    assert [row['image'] for row in errors] == [str(frames / 'gone.png')]
    assert f'line 3 of {str(listing)!r}' in errors[0]['error'] and 'does not exist' in errors[0]['error']
    assert {row['image'] for row in rows} - {str(frames / 'gone.png')} == {str(frames / '0.png'),
                                                                          str(frames / '2.png')}
    assert 'gone.png' in result.stderr and 'line 3' in result.stderr
    again = run('score', '--files-from', listing, '-o', output, check_code=1)  # the rerun tries it again, once
    assert 'gone.png' in again.stderr
    assert sum(row['image'] == str(frames / 'gone.png') for row in read_jsonl(output)) == 1


def test_a_missing_list_file_is_a_usage_error(tmp_path):
    result = run('score', '--files-from', tmp_path / 'no-list.txt', check_code=2)
    assert 'no-list.txt' in result.stderr


# 32. small things
def test_a_numpy_array_is_named_once_and_briefly():
    with pytest.raises(ImageLoadError) as caught:
        load_rgb_image(np.zeros((30, 40, 3), dtype=np.uint8))
    message = str(caught.value)
    assert 'shape=(30, 40, 3)' in message and 'dtype=uint8' in message and 'Image.fromarray' in message
    assert 'array([' not in message and '0, 0' not in message  # before: the whole array, twice


def test_counts_of_one_are_singular(tmp_path):
    from tests.support.fake_hub import CLASS_COLOURS, draw_scene
    one = tmp_path / 'one'
    one.mkdir()
    draw_scene((256, 256), heads=[(0, 0, CLASS_COLOURS['good'])])[0].save(one / 'face.png')
    scores = tmp_path / 'scores.jsonl'
    printed = [run('score', one, '-o', scores, check_code=0).stderr,
               run('filter', '--scores', scores, '--thresholds', check_code=0).stdout,
               run('filter', '--scores', scores, '--min-quality', '0', '-o', tmp_path / 'kept', check_code=0).stderr,
               run('crop', '--scores', scores, '-o', tmp_path / 'crops', check_code=0).stderr,
               run('report', scores, '-o', tmp_path / 'report', check_code=0).stderr]
    text = '\n'.join(printed)
    for expected in ('Done: 1 image in', ', 1 face', '1 image (1 with faces, 0 failed), 1 face', 'Kept 1 of 1 image ',
                     'Wrote 1 crop ', 'of 1 face shown'):
        assert expected in text, (expected, text)
    assert not re.search(r'(?<![\d.])1 (image|face|crop|file)s\b', text), text  # before: "1 faces", "1 images"


def test_every_command_that_writes_takes_o_and_output():
    from imgutils_facequal.cli import main
    for name in ('score', 'filter', 'crop', 'report', 'export', 'eval-crops'):
        option = next(param for param in main.commands[name].params if '-o' in param.opts)
        assert '--output' in option.opts, name


def test_the_command_list_shows_each_whole_first_sentence():
    from imgutils_facequal.cli import main
    listing = run('--help', check_code=0).stdout.split('Commands:')[1]
    assert '...' not in listing
    words = ' '.join(listing.split())
    for name, command in main.commands.items():
        first_sentence = ' '.join(command.help.split('.')[0].split())
        assert first_sentence in words, name


def test_a_home_that_is_a_file_is_named_with_what_to_do(frames, tmp_path):
    home = tmp_path / 'home-file'
    home.write_text('not a folder')
    env = dict(os.environ, IMGUTILS_FACEQUAL_HOME=str(home))
    for args in (['score', frames], ['models']):
        result = run_process(*args, check_code=3, env=env, timeout=120)  # before: "Please report this"
        assert 'report this' not in result.stderr
        assert 'IMGUTILS_FACEQUAL_HOME' in result.stderr and 'not a folder' in result.stderr, result.stderr
