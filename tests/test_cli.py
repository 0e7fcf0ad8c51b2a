"""The command line on folders the tests build: in process, and in real processes where a signal is the point."""
import importlib.util
import json
import os
import re
import signal
import time

import pytest
from PIL import Image

from tests.support.cli import COLOUR_LABELS, huge_png, read_jsonl, run, scene, start_process
from tests.support.fake_hub import solid_image


@pytest.fixture
def folder(tmp_path):
    """Eight scenes in two folders, a frame without a face, and a tags file that is no image."""
    root = tmp_path / 'frames'
    (root / 'episode2').mkdir(parents=True)
    expected = {}
    for index in range(8):
        image, faces = scene(index)
        path = root / ('episode2' if index >= 4 else '') / f'frame{index:02d}.png'
        image.save(path)
        expected[str(path)] = faces
    empty = root / 'black.jpg'
    solid_image((0, 0, 0), size=(200, 150)).save(empty)
    expected[str(empty)] = []
    (root / 'frame00.txt').write_text('1girl, smile')
    return root, expected


#: A black frame's perceptual hash, recorded with the dedup extra (imagehash) and not without it.
HASHED_BLACK = {'phash': '0000000000000000'} if importlib.util.find_spec('imagehash') else {}


def test_score_rows_match_where_the_faces_are(folder, tmp_path):
    root, expected = folder
    output = tmp_path / 'scores.jsonl'
    result = run('score', root, '-o', output, '--crop', 'face', '--margin', '0', check_code=0)
    rows = read_jsonl(output)
    by_image = {}
    for row in rows:
        by_image.setdefault(row['image'], []).append(row)
    assert set(by_image) == set(expected)
    for path, faces in expected.items():
        image_rows = by_image[path]
        if not faces:
            assert image_rows == [{'image': path, 'face': None, 'faces': 0, 'width': 200, 'height': 150,
                                   **HASHED_BLACK, 'error': None}]
            continue
        assert len(image_rows) == len(faces) and all(row['faces'] == len(faces) for row in image_rows)
        got = sorted((tuple(row['bbox']), row['label']) for row in image_rows)
        want = sorted((face, COLOUR_LABELS[colour]) for face, _, colour in faces)
        assert got == want
        for row in image_rows:
            assert row['label'] == max(row['scores'], key=row['scores'].get)
            assert abs(sum(row['scores'].values()) - 1) < 1e-6 and 0 <= row['quality'] <= 1
            assert row['detection_score'] > 0.5 and row['crop_bbox'] == row['bbox']
    assert 'Done: 9 images' in result.stderr and 'faces per class' in result.stderr


def test_score_csv_and_stdout(folder, tmp_path):
    root, expected = folder
    output = tmp_path / 'scores.csv'
    run('score', root, '-o', output, '--quiet', check_code=0)
    import csv
    with open(output, newline='') as f:
        rows = list(csv.DictReader(f))
    assert {row['image'] for row in rows} == set(expected)
    assert {'p_poor', 'p_ok', 'p_good', 'p_excellent', 'x0', 'quality'} <= set(rows[0])
    result = run('score', next(iter(expected)), '--quiet', check_code=0)
    assert result.stderr == ''
    assert all(json.loads(line)['faces'] >= 2 for line in result.stdout.splitlines())


def test_broken_files_are_reported_and_the_run_goes_on(folder, tmp_path):
    root, expected = folder
    broken = root / 'broken'
    broken.mkdir()
    (broken / 'text.png').write_text('not an image at all')
    good = root / 'frame00.png'
    (broken / 'truncated.png').write_bytes(good.read_bytes()[:300])
    (broken / 'empty.jpg').write_bytes(b'')
    huge_png(broken / 'huge.png')
    os.symlink(tmp_path / 'nowhere.png', broken / 'unreadable.png')
    output = tmp_path / 'scores.jsonl'
    result = run('score', root, '-o', output, check_code=1)
    rows = read_jsonl(output)
    errors = {row['image']: row['error'] for row in rows if row['error']}
    assert set(errors) == {str(broken / name) for name in
                           ('text.png', 'truncated.png', 'empty.jpg', 'huge.png', 'unreadable.png')}
    assert 'cannot identify image' in errors[str(broken / 'text.png')]
    assert 'DecompressionBomb' in errors[str(broken / 'huge.png')]
    assert 'No such file' in errors[str(broken / 'unreadable.png')]
    assert all(name in errors[name] for name in errors)  # each reason names its file
    scored = {row['image'] for row in rows if not row['error']}
    assert scored == set(expected)
    assert 'failed: 5' in result.stderr


def test_missing_model_exits_3(folder):
    result = run('score', folder[0], '--model', 'someone/not-cached', check_code=3)
    assert "someone/not-cached" in result.stderr and 'HF_HUB_OFFLINE' in result.stderr
    assert result.stdout == ''


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGKILL])
def test_interrupted_run_resumes_with_every_image_once(tmp_path, sig):
    root = tmp_path / 'many'
    root.mkdir()
    for index in range(160):
        scene(index)[0].save(root / f'{index:03d}.png')
    output = tmp_path / 'scores.jsonl'
    process = start_process('score', root, '-o', output, '--batch-size', '2', '--workers', '1')
    deadline = time.time() + 120
    while time.time() < deadline:
        if output.exists() and output.read_bytes().count(b'\n') >= 30:
            break
        time.sleep(0.005)
    process.send_signal(sig)
    process.wait(timeout=60)
    if sig == signal.SIGINT:
        assert process.returncode == 130
    first_run = output.read_bytes()
    lines_before = first_run.count(b'\n')
    assert 30 <= lines_before < 160 * 2, 'the signal must land part-way through the run'

    result = run('score', root, '-o', output, check_code=0)
    assert 'skipped, already in the output' in result.stderr
    rows = read_jsonl(output)
    counts = {}
    for row in rows:
        counts.setdefault(row['image'], []).append(row)
    assert set(counts) == {str(root / f'{index:03d}.png') for index in range(160)}
    for image, image_rows in counts.items():
        assert len(image_rows) == image_rows[0]['faces'] == len({row['face'] for row in image_rows})


def test_filter_dry_run_changes_nothing(folder, tmp_path):
    root, _ = folder
    out = tmp_path / 'kept'

    def snapshot():
        return sorted((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in tmp_path.rglob('*'))

    before = snapshot()
    result = run('filter', root, '--out', out, '--min-label', 'excellent', '--crop', 'face', '--margin', '0',
                 '--dry-run', check_code=0)
    assert snapshot() == before
    assert not out.exists()
    assert result.stdout.count('would copy') == 6  # frames whose faces include a white one


@pytest.mark.parametrize('mode', ['copy', 'hardlink', 'move'])
def test_filter_modes(folder, tmp_path, mode):
    root, expected = folder
    out = tmp_path / 'kept'
    should_keep = {path for path, faces in expected.items()
                   if any(COLOUR_LABELS[colour] == 'excellent' for _, _, colour in faces)}
    originals = {path: open(path, 'rb').read() for path in should_keep}
    run('filter', root, '--out', out, '--min-label', 'excellent', '--crop', 'face', '--margin', '0',
        '--mode', mode, check_code=0)
    kept = {str(p) for p in out.rglob('*.png')}
    assert kept == {str(out / os.path.relpath(path, root)) for path in should_keep}
    for path in should_keep:
        target = out / os.path.relpath(path, root)
        assert target.read_bytes() == originals[path]
        if mode == 'copy':
            assert os.path.exists(path) and not os.path.samefile(path, target)
        elif mode == 'hardlink':
            assert os.path.samefile(path, target)
        else:
            assert not os.path.exists(path)
    assert all(os.path.exists(path) for path in set(expected) - should_keep)


def test_filter_every_face_and_min_quality(folder, tmp_path):
    root, expected = folder
    out = tmp_path / 'kept'
    result = run('filter', root, '--out', out, '--min-quality', '0.3', '--every-face', '--crop', 'face',
                 '--margin', '0', '--dry-run', check_code=0)
    # every face at least `ok` (quality value >= 1/3): no red face in the frame
    want = {path for path, faces in expected.items() if faces
            and all(COLOUR_LABELS[colour] != 'poor' for _, _, colour in faces)}
    got = {line.split(' -> ')[0][len('would copy '):] for line in result.stdout.splitlines()}
    assert got == want and want
    assert run('filter', root, '--out', out, check_code=2).returncode == 2


def test_crop_writes_faces_with_their_quality(folder, tmp_path):
    root, expected = folder
    out = tmp_path / 'crops'
    run('crop', root / 'frame01.png', '--out', out, '--crop', 'face', '--margin', '0', check_code=0)
    files = sorted(p.name for p in out.iterdir())
    labels = sorted(COLOUR_LABELS[colour] for _, _, colour in expected[str(root / 'frame01.png')])
    assert len(files) == 3 and sorted(name.split('_')[2] for name in files) == labels
    for path in out.iterdir():
        assert Image.open(path).size == (32, 32)
    sidecar_out = tmp_path / 'sidecar'
    run('crop', root / 'frame01.png', '--out', sidecar_out, '--sidecar', '--min-label', 'good', check_code=0)
    sidecars = sorted(sidecar_out.glob('*.json'))
    for path in sidecars:
        info = json.loads(path.read_text())
        assert info['label'] in ('good', 'excellent')
        assert (sidecar_out / (path.stem + '.png')).exists()


def test_visualize(folder, tmp_path):
    root, _ = folder
    out = tmp_path / 'boxes'
    run('score', root / 'episode2', '--visualize', out, '-q', check_code=0)
    drawn = sorted(p.name for p in out.iterdir())
    assert drawn == ['frame04.png', 'frame05.png', 'frame06.png', 'frame07.png']
    assert Image.open(out / 'frame04.png').size == (256, 256)


def test_models_download_plugins_version_help(tmp_path):
    result = run('models', '--json', check_code=0)
    rows = json.loads(result.stdout)
    assert [row['name'] for row in rows] == ['caformer_s36.head_crop', 'caformer_s36']
    assert rows[0]['status'].startswith('cached: ') and rows[1]['framing_sensitive']
    result = run('download', 'caformer_s36', check_code=0)
    assert 'model.onnx ->' in result.stdout and 'face_detect_v1.4_s/model.onnx' in result.stdout
    result = run('download', 'someone/not-cached', '--no-detectors', check_code=3)
    assert 'someone/not-cached' in result.stderr
    result = run('plugins', check_code=0)
    assert 'face_quality' in result.stdout and 'imgutils_facequal.plugins.builtin.imgutils_detectors' in result.stdout
    assert run('--version', check_code=0).stdout.strip() == 'imgutils-facequal, version 0.1.0'
    for command in ['score', 'filter', 'crop', 'models', 'download', 'plugins', 'export']:
        help_text = run(command, '--help', check_code=0).stdout
        assert help_text.startswith(f'Usage: imgutils-facequal {command}')
    assert run('score', check_code=2).returncode == 2


def test_options_that_do_not_go_together_are_usage_errors(folder, tmp_path):
    root, _ = folder
    for command in (['score', root], ['filter', root, '--out', tmp_path / 'kept', '--min-label', 'ok'],
                    ['crop', root, '--out', tmp_path / 'crops']):
        result = run(*command, '--precision', 'bf16', '--backend', 'onnx', check_code=2)
        assert "precision='bf16' runs in torch or OpenVINO" in result.stderr and 'Traceback' not in result.stderr


def test_a_folder_after_ray_is_not_taken_for_an_address(folder, tmp_path):
    root, _ = folder
    result = run('score', '--ray', root, '-o', tmp_path / 'out', check_code=2)
    assert 'is not a Ray address' in result.stderr and f'--ray local {root}' in result.stderr
    assert not (tmp_path / 'out').exists()


def test_head_localisation_options_reach_the_detector(folder, tmp_path):
    root, expected = folder
    default, heads = tmp_path / 'paired.jsonl', tmp_path / 'heads.jsonl'
    run('score', root, '-o', default, '--head-localisation', 'paired', check_code=0)
    run('score', root, '-o', heads, '--head-localisation', 'heads', '--head-infer-size', '64', check_code=0)
    meta = json.loads((tmp_path / 'heads.jsonl.meta.json').read_text())
    assert meta['head_localisation'] == 'heads' and meta['head_infer_size'] == 64
    faces = lambda path: {(row['image'], tuple(row['head_bbox'])) for row in read_jsonl(path) if row['faces']}  # noqa
    shared = faces(heads) & faces(default)  # the same head boxes anchor the crops, found by the head detector alone
    assert len(shared) >= len(faces(default)) // 2 and shared, (faces(heads), faces(default))
    assert 'head_localisation' in run('score', root, '-o', default, '--head-localisation', 'heads',
                                      check_code=2).stderr  # another setting than the output was written with
    fast = run('score', root, '-o', tmp_path / 'fast.jsonl', '--fast', '--head-infer-size', '64',
               '--head-level', 's', check_code=0)  # options given win over the preset's
    meta = json.loads((tmp_path / 'fast.jsonl.meta.json').read_text())
    assert (meta['head_localisation'], meta['head_level'], meta['head_infer_size']) == ('heads', 's', 64)
    # the preset's classifier: OpenVINO where its extra is installed (the full test install), else onnxruntime
    assert meta['backend'] == ('openvino' if importlib.util.find_spec('openvino') else 'onnx')
    run('score', root, '-o', tmp_path / 'fast-onnx.jsonl', '--fast', '--backend', 'onnx', '--head-infer-size', '64',
        '--head-level', 's', '-q', check_code=0)
    assert json.loads((tmp_path / 'fast-onnx.jsonl.meta.json').read_text())['backend'] == 'onnx'
    assert 'time per image: decoding' in fast.stderr and 'detection' in fast.stderr


def test_each_run_of_main_in_one_process_shows_its_own_status_lines(monkeypatch):
    """`main` called again in one process (CliRunner swaps stderr per call): status lines go to the stderr of
    the run that logs them, and ``-q`` quiets only its own run."""
    import logging
    import warnings

    import click
    from click.testing import CliRunner

    from imgutils_facequal.cli import main
    from imgutils_facequal.cli.common import _quiet

    @click.command('status-probe')
    @click.option('--quiet', '-q', is_flag=True, callback=_quiet)
    def probe(quiet):
        logging.getLogger('imgutils_facequal.probe').info('a status line')

    logger = logging.getLogger('imgutils_facequal')
    monkeypatch.setattr(logger, 'level', logger.level)  # put back afterwards, with how warnings print
    monkeypatch.setattr(warnings, 'formatwarning', warnings.formatwarning)
    monkeypatch.setitem(main.commands, 'status-probe', probe)
    runner = CliRunner()
    runs = [runner.invoke(main, args, catch_exceptions=False)
            for args in (['status-probe', '-q'], ['status-probe'], ['status-probe'])]
    assert [(result.exit_code, result.stderr) for result in runs] == [
        (0, ''), (0, 'imgutils-facequal: a status line\n'), (0, 'imgutils-facequal: a status line\n')]


def test_the_summary_leaves_loading_the_detector_out_of_detection_time(tmp_path):
    """A detector whose first call loads its model (here: sleeps 2 s, once): the command loads it before the
    first image, so the summary's detection time per image is the detector's, not the load spread over a
    few images."""
    from imgutils_facequal import hookimpl, register_plugin, unregister_plugin
    loaded = []

    def slow_to_load(image, **options):
        if not loaded:
            time.sleep(2.0)
            loaded.append(True)
        width, height = image.size
        return [((width // 4, height // 4, 3 * width // 4, 3 * height // 4), 'face', 0.9)]

    class SlowToLoad:
        @hookimpl
        def register_detectors(self, register):
            register('slow_to_load', slow_to_load)

    root = tmp_path / 'frames'
    root.mkdir()
    for index in range(3):
        scene(index)[0].save(root / f'{index}.png')
    register_plugin(SlowToLoad(), name='slow-to-load')
    try:
        done = run('score', root, '-o', tmp_path / 'scores.jsonl', '--detector', 'slow_to_load', '--crop', 'face',
                   check_code=0)
    finally:
        unregister_plugin('slow-to-load')
    detection = float(re.search(r'detection ([0-9.]+) s', done.stderr).group(1))
    assert loaded and detection < 0.5, done.stderr  # the 2 s load over 3 images would be 0.67 s or more
