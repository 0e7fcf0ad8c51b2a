"""Hardening of the store (issue 33): resume, companion files, the lock, a full disk, shard folders, per-image
outputs, rows from elsewhere, names that are not UTF-8, and Ray's addresses."""
import json
import os
import socket
import subprocess
import sys

import pytest

from imgutils_facequal import find_images, load_face_quality_detector, score_images_with
from imgutils_facequal.errors import OutputError
from imgutils_facequal.store import ScoresWriter, make_provenance, read_scores
from tests.support.cli import read_jsonl, run, run_process, scene, write_scenes

pytestmark = [pytest.mark.extras, pytest.mark.timeout(300)]

ODD_NAME = os.fsdecode(b'caf\xe9 \xff.png')  # not UTF-8: lone surrogates, as os.fsdecode reads it


@pytest.fixture
def frames(tmp_path):
    return write_scenes(tmp_path / 'frames', 3)


def write_run(output, paths, finished=True):
    """One run of the resumable writer over ``paths``, as ``score -o`` makes it; ``finished=False`` as if
    interrupted."""
    faces = load_face_quality_detector()
    writer = ScoresWriter(str(output))
    writer.start(faces.classifier.classes, make_provenance(faces))
    for result in score_images_with(faces, [item for item in find_images(paths) if not writer.is_done(item.path)]):
        writer.write(result)
    writer.close(finished)


# ------------------------------------------------------------------ 8. a resumed image's error row goes


@pytest.mark.parametrize('first_finished', [True, False], ids=['after-a-finished-run', 'after-an-interrupted-run'])
def test_a_parquet_resume_drops_the_error_row_of_an_image_scored_again(frames, tmp_path, first_finished):
    import pyarrow.parquet as pq
    (frames / 'x.png').write_bytes(b'not an image yet')
    output = tmp_path / 'scores.parquet'
    write_run(output, [str(frames)], finished=first_finished)  # interrupted: only its part files are there
    scene(5)[0].save(frames / 'x.png')
    write_run(output, [str(frames)])
    rows = pq.read_table(output).to_pylist()
    of_x = [row for row in rows if row['image'].endswith('x.png')]
    assert len(of_x) == 3 and all(row['error'] is None for row in of_x)
    assert not os.path.exists(f'{output}.parts')
    assert not [row for row in read_scores(str(output)).rows if row.get('error')]


# ------------------------------------------------------------------ 9. companion files checked up front


@pytest.mark.parametrize('name,companion,kind', [
    ('scores.jsonl', 'scores.jsonl.lock', 'folder'),
    ('scores.jsonl', 'scores.jsonl.meta.json', 'folder'),
    ('scores.parquet', 'scores.parquet.parts', 'file'),
])
def test_a_companion_of_the_wrong_kind_is_refused_before_any_model_loads(frames, tmp_path, name, companion, kind):
    (tmp_path / companion).mkdir() if kind == 'folder' else (tmp_path / companion).write_text('mine')
    result = run('score', frames, '-o', tmp_path / name, '--model', 'no-such/model', check_code=3)
    assert f"{str(tmp_path / companion)!r}, where imgutils-facequal keeps" in result.stderr
    assert f'is a {kind}' in result.stderr and not (tmp_path / name).exists()


def test_an_output_name_too_long_for_its_companions_is_refused_up_front(frames, tmp_path):
    name = 'x' * (250 - len('.jsonl')) + '.jsonl'  # itself fine; its .meta.json would be 260 bytes
    result = run('score', frames, '-o', tmp_path / name, check_code=3)
    assert 'too long for the files kept beside it' in result.stderr and '.meta.json' in result.stderr
    assert os.listdir(tmp_path) == ['frames']


def test_a_corrupt_or_misplaced_record_is_named_as_such(frames, tmp_path):
    output = tmp_path / 'scores.jsonl'
    run('score', frames, '-o', output, check_code=0)
    meta = tmp_path / 'scores.jsonl.meta.json'
    meta.write_text('{"model_name": "caformer')  # cut short
    for result in (run('score', frames, '-o', output, check_code=2),
                   run('report', output, '-o', tmp_path / 'report', check_code=2)):
        assert f"{str(meta)!r}, the record of what produced {str(output)!r}, cannot be read" in result.stderr
    meta.unlink()
    meta.mkdir()
    result = run('report', output, '-o', tmp_path / 'report', check_code=2)
    assert 'is not a file' in result.stderr and 'missing' not in result.stderr


# ------------------------------------------------------------------ 10. two runs never write one output


def test_a_deleted_lock_file_never_lets_two_runs_write_one_output(frames, tmp_path):
    faces = load_face_quality_detector()
    results = list(score_images_with(faces, find_images([str(frames)])))
    output, lock = tmp_path / 'scores.jsonl', tmp_path / 'scores.jsonl.lock'
    first = ScoresWriter(str(output)).start(faces.classifier.classes, make_provenance(faces))
    first.write(results[0])
    lock.unlink()  # a user tidying up: with no other run, the first takes the lock again and goes on
    first.write(results[1])
    assert lock.exists()
    lock.unlink()
    second = ScoresWriter(str(output)).start(faces.classifier.classes, make_provenance(faces))
    with pytest.raises(OutputError, match='was deleted while this run wrote'):
        first.write(results[2])
    first.close(finished=False)
    assert lock.exists()  # the second run's lock, left alone
    with pytest.raises(OutputError, match='in use'):
        ScoresWriter(str(output))
    second.write(results[2])
    second.close()
    rows = read_jsonl(output)
    assert [len([row for row in rows if row['image'] == result.image.path]) for result in results] == \
        [len(result.faces) for result in results]  # each image's rows once: only one run wrote each


# ------------------------------------------------------------------ 11. a full disk while merging Parquet

FULL_DISK = r'''
import errno, os, sys
_where = os.environ['FACEQUAL_FULL']
def _full():
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
if _where == 'parts-folder':  # the disk fills up before the run's part folder exists
    _mkdir = os.mkdir
    def mkdir(path, *args, **kwargs):
        if os.fspath(path).endswith('.parts'):
            raise _full()
        return _mkdir(path, *args, **kwargs)
    os.mkdir = mkdir
if _where == 'merge':  # as pyarrow says it: the merged output cannot be written
    import pyarrow.parquet as pq
    _write_table = pq.write_table
    def write_table(table, where, *args, **kwargs):
        if os.path.basename(where).startswith('.scores.parquet.'):
            raise OSError(errno.ENOSPC, 'Error writing bytes to file. Detail: [errno 28] No space left on device')
        return _write_table(table, where, *args, **kwargs)
    pq.write_table = write_table
sys.argv[0] = 'imgutils-facequal'
from imgutils_facequal.cli import main
main()
'''


@pytest.mark.parametrize('where', ['parts-folder', 'merge'])
def test_a_full_disk_while_writing_parquet_is_exit_3_with_a_message(frames, tmp_path, where):
    output = tmp_path / 'scores.parquet'
    full = subprocess.run([sys.executable, '-c', FULL_DISK, 'score', str(frames), '-o', str(output)],
                          capture_output=True, text=True, timeout=300, env=dict(os.environ, FACEQUAL_FULL=where))
    assert full.returncode == 3, full.stderr[-3000:]
    assert 'Traceback' not in full.stderr and 'No space left on device' in full.stderr
    assert 'free some space and run again' in full.stderr
    assert not output.exists() and not [name for name in os.listdir(tmp_path) if name.endswith('.partial')]
    second = run('score', frames, '-o', output, check_code=0)  # the space is back: the run finishes
    assert len(read_scores(str(output)).rows) == 7, second.stderr


# ------------------------------------------------------------------ 12. score --ray leaves foreign files alone


def test_score_ray_refuses_a_folder_holding_parquet_files_it_did_not_write(frames, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    output = tmp_path / 'mixed'
    output.mkdir()
    pq.write_table(pa.table({'image': ['a.png'], 'error': ['mine']}), output / 'part-0.parquet')
    (output / 'notes.parquet').write_bytes(b'not parquet at all')
    before = {name: (output / name).read_bytes() for name in os.listdir(output)}
    result = run('score', frames, '--ray', '-o', output, check_code=2)
    assert 'did not write' in result.stderr and "'notes.parquet'" in result.stderr
    assert {name: (output / name).read_bytes() for name in os.listdir(output)} == before  # nothing renamed


# ------------------------------------------------------------------ 13. per-image outputs are refused where faces are needed


@pytest.mark.parametrize('fmt', ['parquet', 'csv'])
def test_a_per_image_output_is_refused_by_filter_and_report(frames, tmp_path, fmt):
    output = tmp_path / f'images.{fmt}'
    run('score', frames, '--per-image', '-o', output, check_code=0)
    for result in (run('report', output, '-o', tmp_path / 'report', check_code=2),
                   run('filter', '--scores', output, '--out', tmp_path / 'kept', '--min-label', 'poor', check_code=2)):
        assert 'one row per image' in result.stderr
    assert not (tmp_path / 'kept').exists() and not (tmp_path / 'report').exists()


# ------------------------------------------------------------------ 18. a byte-order mark, as Excel and Notepad save


@pytest.mark.parametrize('fmt', ['jsonl', 'csv'])
def test_a_scores_file_saved_with_a_byte_order_mark_reads_as_without(frames, tmp_path, fmt):
    output = tmp_path / f'scores.{fmt}'
    run('score', frames, '-o', output, check_code=0)
    table, rows = run('filter', '--scores', output, '--thresholds', check_code=0).stdout, read_scores(str(output)).rows
    output.write_bytes('\ufeff'.encode('utf-8') + output.read_bytes())  # what "save as UTF-8" in Notepad adds
    assert read_scores(str(output)).rows == rows
    assert run('filter', '--scores', output, '--thresholds', check_code=0).stdout == table
    run('report', output, '-o', tmp_path / 'report', check_code=0)
    run('filter', '--scores', output, '--min-label', 'poor', '--out', tmp_path / 'kept', check_code=0)
    assert sorted(os.listdir(tmp_path / 'kept')) == sorted(os.listdir(frames))


# ------------------------------------------------------------------ 17. rows from elsewhere are checked when read

FACE = {'image': 'frames/0.png', 'face': 0, 'faces': 1, 'width': 256, 'height': 256, 'bbox': [10, 10, 60, 60],
        'label': 'good', 'score': 0.7, 'scores': {'poor': 0.1, 'ok': 0.1, 'good': 0.7, 'excellent': 0.1},
        'quality': 0.6, 'detection_score': 0.9, 'head_bbox': None, 'crop_bbox': [0, 0, 80, 80], 'error': None}


@pytest.mark.parametrize('change,field', [
    ({'quality': float('nan')}, 'quality'),
    ({'quality': None}, 'quality'),
    ({'label': 'superb'}, 'label'),
    ({'scores': [0.1, 0.1, 0.7, 0.1]}, 'scores'),
    ({'image': 42}, 'image'),
    ({'crop_bbox': None}, 'crop_bbox'),
    ({'crop_bbox': [0, 0, 80]}, 'crop_bbox'),
    ({'crop_bbox': [80, 80, 0, 0]}, 'crop_bbox'),
    ({'crop_bbox': [0, 0, 900000, 900000]}, 'crop_bbox'),
    ({'score': 'high'}, 'score'),
    ({'width': 900000, 'height': 900000, 'crop_bbox': [0, 0, 900000, 900000]}, 'width and height'),
])
def test_a_hand_edited_jsonl_row_is_refused_naming_the_file_the_line_and_the_field(tmp_path, change, field):
    path = tmp_path / 'edited.jsonl'
    path.write_text(json.dumps(dict(FACE, image='frames/1.png')) + '\n' + json.dumps(dict(FACE, **change)) + '\n')
    with pytest.raises(ValueError) as caught:
        read_scores(str(path))
    assert str(caught.value).startswith(f"{str(path)!r} line 2: {field} "), caught.value
    result = run('report', path, '-o', tmp_path / 'report', check_code=2)
    assert f'line 2: {field} ' in result.stderr


def test_a_hugging_face_parquet_and_a_csv_score_as_text_are_refused_naming_the_field(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    hf = tmp_path / 'hf.parquet'
    pq.write_table(pa.table({'image': [{'bytes': b'\x89PNG', 'path': 'a.png'}], 'faces': [1]}), hf)
    with pytest.raises(ValueError, match=r"hf.parquet' row 1: image is a struct, not the name of an image "
                                         r"\(an image column of a Hugging Face dataset"):
        read_scores(str(hf))
    table = tmp_path / 'edited.csv'
    run('score', write_scenes(tmp_path / 'frames', 1), '-o', table, check_code=0)
    lines = table.read_bytes().decode().split('\r\n')
    columns = lines[0].split(',')
    values = lines[1].split(',')
    values[columns.index('score')] = 'high'
    table.write_bytes('\r\n'.join([lines[0], ','.join(values), *lines[2:]]).encode())
    with pytest.raises(ValueError, match=r"edited.csv' record 2 is not a csv row of imgutils-facequal \(score is "
                                         r"'high', not a number\)"):
        read_scores(str(table))


def test_a_report_shows_a_face_whose_box_the_image_no_longer_holds_as_gone(frames, tmp_path):
    output = tmp_path / 'scores.jsonl'
    run('score', frames, '-o', output, check_code=0)
    scene(0)[0].resize((40, 40)).save(frames / '0.png')  # replaced by a smaller image since
    result = run('report', output, '-o', tmp_path / 'report', check_code=0)
    assert '7 faces shown' in result.stderr or 'of 7 faces' in result.stderr, result.stderr
    assert len(os.listdir(tmp_path / 'report' / 'thumbs')) == 5  # the two faces of 0.png are gone, not the run


# ------------------------------------------------------------------ 19. names that are not UTF-8


@pytest.mark.skipif(sys.platform == 'win32', reason='Windows file names are always Unicode')
def test_a_name_that_is_not_utf8_is_kept_by_parquet_and_shown_by_the_report(frames, tmp_path):
    scene(7)[0].save(os.path.join(frames, ODD_NAME))
    output = tmp_path / 'scores.parquet'
    run('score', frames, '-o', output, check_code=0)
    rerun = run('score', frames, '-o', output, check_code=0)
    assert '4 images skipped, already in the output' in rerun.stderr
    images = {row['image'] for row in read_scores(str(output)).rows}
    assert os.path.join(str(frames), ODD_NAME) in images
    run('report', output, '-o', tmp_path / 'report', check_code=0)
    page = (tmp_path / 'report' / 'index.html').read_bytes()
    assert b'caf%E9%20%FF.png' in page  # the link holds the name's own bytes


# ------------------------------------------------------------------ 16. Ray addresses that answer nothing


def _free_port():
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


@pytest.mark.timeout(120)
def test_ray_addresses_without_a_cluster_end_in_seconds_with_a_message(frames, tmp_path):
    env = {key: value for key, value in os.environ.items() if key != 'RAY_ADDRESS'}
    env['RAY_TMPDIR'] = str(tmp_path / 'ray')  # where --ray auto looks for a cluster started on this machine
    address = f'127.0.0.1:{_free_port()}'
    nothing = run_process('score', frames, '--ray', address, '-o', tmp_path / 'a', check_code=3, timeout=60, env=env)
    assert f'no Ray cluster answers at {address}' in nothing.stderr
    auto = run_process('score', frames, '--ray', 'auto', '-o', tmp_path / 'b', check_code=3, timeout=60, env=env)
    assert 'no Ray cluster is running on this machine' in auto.stderr


@pytest.mark.skipif(sys.platform == 'win32', reason='Windows file names are always Unicode')
@pytest.mark.timeout(420)
def test_score_ray_keeps_a_name_that_is_not_utf8_and_a_rerun_skips_it(frames, tmp_path):
    """A real local cluster, started by the command itself, as a user's first run would."""
    scene(7)[0].save(os.path.join(frames, ODD_NAME))
    output = tmp_path / 'shards'
    env = {key: value for key, value in os.environ.items() if key != 'RAY_ADDRESS'}
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [os.getcwd(), env.get('PYTHONPATH')]))
    first = run_process('score', frames, '--ray', '-o', output, check_code=0, timeout=300, env=env)
    assert not [line for line in first.stderr.splitlines() if 'core_worker' in line], first.stderr[-3000:]
    images = {row['image'] for row in read_scores(str(output)).rows}
    assert os.path.join(str(frames), ODD_NAME) in images and len(images) == 4
    second = run_process('score', frames, '--ray', '-o', output, check_code=0, timeout=300, env=env)
    assert '4 images skipped, already in the output' in second.stderr, second.stderr[-3000:]


def test_per_image_rows_are_refused_by_the_python_api_too(frames, tmp_path):
    from imgutils_facequal import kept_images, write_report
    output = tmp_path / 'images.jsonl'
    run('score', frames, '--per-image', '-o', output, check_code=0)
    rows = read_scores(str(output)).rows
    for call in (lambda: kept_images(rows, min_label='poor'), lambda: write_report(rows, str(tmp_path / 'report'))):
        with pytest.raises(ValueError, match='one per image'):
            call()
    assert not (tmp_path / 'report').exists()


def test_a_hand_edited_record_is_a_difference_named_as_such(frames, tmp_path):
    output = tmp_path / 'scores.jsonl'
    run('score', frames, '-o', output, check_code=0)
    meta = tmp_path / 'scores.jsonl.meta.json'
    meta.write_text(json.dumps(dict(json.loads(meta.read_text()), margin='wide')))
    result = run('score', frames, '-o', output, check_code=2)
    assert "margin: 'wide' in the file, 0.5 now" in result.stderr
