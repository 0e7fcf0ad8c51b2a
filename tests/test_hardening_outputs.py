"""Hardening, outputs and exit codes: a rerun resumes only with the same settings, an output has one writer at a
time, failed images are tried again and counted, output problems are clear, and the summary and the exit codes say
what happened.

Each test names the item of the hardening issue it covers; each failed before its fix.
"""
import json
import os
import subprocess
import sys

import pytest

from tests.support.cli import SCRIPT, rows_by_image, run, scene, write_scenes
from tests.support.fake_hub import QUALITY_CLASSES


@pytest.fixture
def frames(tmp_path):
    """Three scenes of two or three faces each."""
    return write_scenes(tmp_path / 'frames', 3)


# 13. resume refuses other settings
def test_resume_with_another_model_is_refused(frames, tmp_path):
    output = tmp_path / 'scores.csv'
    run('score', frames, '-o', output, check_code=0)
    before = output.read_bytes()
    result = run('score', frames, '-o', output, '--model', 'test-org/reversed-classes', check_code=2)
    assert 'was written with other settings' in result.stderr and 'repo_id' in result.stderr
    result = run('score', frames, '-o', output, '--margin', '1.0', check_code=2)
    assert 'margin: 0.5 in the file, 1.0 now' in result.stderr
    assert output.read_bytes() == before
    meta = json.loads((tmp_path / 'scores.csv.meta.json').read_text())
    assert meta['model_name'] == 'caformer_s36.head_crop' and len(meta['commit']) == 40 and meta['crop'] == 'head'


# 15. two runs on one output
def test_a_second_run_on_the_same_output_says_it_is_in_use(frames, tmp_path):
    import fcntl
    output = tmp_path / 'scores.jsonl'
    first = subprocess.Popen([sys.executable, '-c', f"""
import sys, time
from imgutils_facequal.store import ScoresWriter
out = ScoresWriter({str(output)!r}, 'jsonl')  # what a running score holds, from its start to its end
print('holding', flush=True)
sys.stdin.read()
out.close(finished=False)
"""], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert first.stdout.readline().strip() == 'holding'
    second = run('score', frames, '-o', output, check_code=3)
    assert 'is in use: another imgutils-facequal run is writing it' in second.stderr
    with open(str(output) + '.lock', 'a') as lock:  # the first run holds it indeed
        with pytest.raises(OSError):
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    first.communicate('', timeout=60)
    run('score', frames, '-o', output, check_code=0)  # free again once the first is done
    assert len(rows_by_image(output)) == 3


# 16. failed images are tried again
def test_failed_images_are_retried_and_the_exit_code_stays_honest(frames, tmp_path):
    broken = frames / 'late.png'
    broken.write_bytes(b'not yet an image')
    output = tmp_path / 'scores.jsonl'
    run('score', frames, '-o', output, check_code=1)
    again = run('score', frames, '-o', output, check_code=1)  # still broken: still a failure
    assert 'failed: 1' in again.stderr
    scene(9)[0].save(broken)
    fixed = run('score', frames, '-o', output, check_code=0)
    assert '1 image that failed before scored again' in fixed.stderr
    rows = rows_by_image(output)
    assert len(rows) == 4 and not any(row['error'] for image in rows.values() for row in image)


# 19. output problems are found before any model loads, and reported without a traceback
def test_output_problems_are_clear(frames, tmp_path):
    missing = run('score', frames, '-o', tmp_path / 'no-such-folder' / 'scores.jsonl', check_code=3)
    assert 'does not exist' in missing.stderr and 'Traceback' not in missing.stderr
    read_only = tmp_path / 'read-only.jsonl'
    read_only.write_text('')
    read_only.chmod(0o444)
    if os.geteuid() != 0:  # root writes anyway
        assert 'permission denied' in run('score', frames, '-o', read_only, check_code=3).stderr
    full = run('score', frames, '-o', '/dev/full', check_code=3)
    assert 'No space left on device' in full.stderr and 'Traceback' not in full.stderr
    # /dev/stdout a pipe to another process, as in a shell
    piped = subprocess.run(f'{SCRIPT} score {frames} -o /dev/stdout | cat', shell=True, capture_output=True,
                           text=True, timeout=120)
    assert piped.returncode == 0 and piped.stdout.count('\n') >= 3


# 28. small things: the summary
def test_summary_counts_in_the_models_class_order(frames):
    result = run('score', frames / '0.png', check_code=0)
    assert 'Done: 1 image in' in result.stderr
    line = next(line for line in result.stderr.splitlines() if 'faces per class' in line)
    assert [part.split()[0] for part in line.split(': ', 1)[1].split(', ')] == QUALITY_CLASSES
    assert 'quality: mean' in result.stderr and 'quartiles' in result.stderr


# 26. exit codes: eval-crops with nothing it can read
def test_eval_crops_with_nothing_readable_fails(tmp_path):
    (tmp_path / 'images').mkdir()
    (tmp_path / 'labels.csv').write_text('image,label,head_x0,head_y0,head_x1,head_y1\nmissing.png,good,0,0,9,9\n')
    result = run('eval-crops', '--images', tmp_path / 'images', '--labels', tmp_path / 'labels.csv', check_code=1)
    assert 'None of the 1 labelled images could be evaluated' in result.stderr


# 26. eval-crops --out draws its plot only where matplotlib is, and says so where it is not
def test_eval_crops_out_with_or_without_matplotlib(tmp_path):
    import importlib.util
    from tests.support.synthetic_eval import CONTENT_REPO, write_synthetic_set
    write_synthetic_set(str(tmp_path / 'set'), per_class=2)
    out = tmp_path / 'report'
    result = run('eval-crops', '--images', tmp_path / 'set', '--labels', tmp_path / 'set' / 'labels.csv',
                 '--model', CONTENT_REPO, '--out', out, check_code=0)
    assert (out / 'report.md').exists() and (out / 'report.json').exists()
    if importlib.util.find_spec('matplotlib') is None:  # a plain `pip install .`, as CI's second run has it
        assert not (out / 'macro_f1.png').exists() and 'not drawn: macro_f1.png needs matplotlib' in result.stderr
    else:
        assert (out / 'macro_f1.png').stat().st_size > 0 and 'not drawn' not in result.stderr
