"""Bad input, faults and first use: each case gets a clear answer, and nothing is lost.

Each test names the item of the hardening issue it covers; each failed before its fix.
"""
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from imgutils_facequal import (InputImage, ModelNotAvailableError, detect_face_quality, find_images,
                               load_face_quality_detector, load_face_quality_model, register_plugin,
                               score_images_with, unregister_plugin)
from imgutils_facequal.errors import InputNotFoundError
from imgutils_facequal.images import load_rgb_image
from tests.support.fake_hub import (CLASS_COLOURS, QUALITY_CLASSES, classifier_repo_files, classifier_stages,
                                    draw_scene, solid_image, write_local_dir, write_repo)
from tests.test_cli import SCRIPT, _default_sigint, read_jsonl, run, scene


@pytest.fixture
def frames(tmp_path):
    root = tmp_path / 'frames'
    root.mkdir()
    for index in range(3):
        scene(index)[0].save(root / f'{index}.png')
    return root


def rows_by_image(path):
    counts = {}
    for row in read_jsonl(path):
        counts.setdefault(row['image'], []).append(row)
    return counts


# 1. a file name that is not valid UTF-8
@pytest.mark.parametrize('fmt', ['jsonl', 'csv'])
def test_a_name_that_is_not_utf8_is_written_and_resumed(frames, tmp_path, fmt):
    name = os.fsdecode(b'b\xff.png')
    scene(5)[0].save(os.path.join(frames, name))
    output = tmp_path / f'scores.{fmt}'
    run('score', frames, '-o', output, check_code=0)
    data = output.read_bytes()
    if fmt == 'jsonl':
        data.decode('utf-8')  # still valid UTF-8: the byte is kept as an escape
        assert os.path.join(str(frames), name) in rows_by_image(output)
    else:
        assert os.fsencode(os.path.join(str(frames), name)) in data  # the bytes themselves
    again = run('score', frames, '-o', output, check_code=0)
    assert 'Done: 0 images' in again.stderr and '4 images skipped' in again.stderr
    assert output.read_bytes() == data


# 2. one detector exception (or bad detections) fails that image, not the run
class FlakyDetectors:
    """Detectors that misbehave on images of one width, each in its own way, and work on the rest."""

    def __init__(self):
        from imgutils_facequal.plugins import get_detector
        self.real = get_detector('face')

    def detect(self, kind):
        def run_detector(image, **options):
            if image.size[0] == 300:
                return {'raises': lambda: (_ for _ in ()).throw(RuntimeError('boom')),
                        'nan': lambda: [((float('nan'), 0, 10, 10), 'face', 0.9)],
                        'inf': lambda: [((0, 0, float('inf'), 10), 'face', 0.9)],
                        'inverted': lambda: [((20, 20, 10, 10), 'face', 0.9)],
                        'malformed': lambda: [(1, 2)],
                        'none': lambda: None}[kind]()
            return self.real(image, **options)
        return run_detector


@pytest.mark.parametrize('kind', ['raises', 'nan', 'inf', 'inverted', 'malformed', 'none'])
def test_a_failing_detector_gives_that_image_an_error_row(frames, kind):
    from imgutils_facequal import hookimpl
    flaky = FlakyDetectors()

    class Plugin:
        @hookimpl
        def register_detectors(self, register):
            register('flaky', flaky.detect(kind))

    scene(7)[0].resize((300, 256)).save(frames / 'odd.png')
    register_plugin(Plugin(), name='flaky-plugin')
    try:
        faces = load_face_quality_detector(detector='flaky')
        results = {r.image.path: r for r in score_images_with(faces, find_images([str(frames)]))}
    finally:
        unregister_plugin('flaky-plugin')
    odd = results.pop(str(frames / 'odd.png'))
    assert odd.error is not None and 'odd.png' in odd.error and "Detector 'flaky'" in odd.error
    assert all(result.error is None and result.faces for result in results.values()) and len(results) == 3


# 3. a FIFO in the input folder, and Ctrl-C
def test_a_fifo_gets_an_error_row_and_the_run_ends(frames, tmp_path):
    os.mkfifo(frames / 'pipe.png')
    output = tmp_path / 'scores.jsonl'
    result = run('score', frames, '-o', output, check_code=1, timeout=120)
    rows = rows_by_image(output)
    assert 'not a regular file' in rows[str(frames / 'pipe.png')][0]['error']
    assert len(rows) == 4 and 'failed: 1' in result.stderr


def test_ctrl_c_ends_a_run_within_seconds(tmp_path):
    root = tmp_path / 'many'
    root.mkdir()
    for index in range(40):
        scene(index)[0].save(root / f'{index:03d}.png')
    output = tmp_path / 'scores.jsonl'
    process = subprocess.Popen([SCRIPT, 'score', str(root), '-o', str(output), '--workers', '2'],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                               preexec_fn=_default_sigint)
    deadline = time.time() + 120
    while time.time() < deadline and not (output.exists() and output.stat().st_size):
        time.sleep(0.01)
    sent = time.time()
    process.send_signal(signal.SIGINT)
    process.wait(timeout=20)
    assert process.returncode == 130 and time.time() - sent < 10


# 6. forking after use
def _score_in_child(path):
    return [face.label for face in detect_face_quality(path)]


def test_forked_workers_after_scoring_in_process(frames):
    paths = [str(path) for path in sorted(frames.iterdir())]
    expected = [_score_in_child(path) for path in paths]  # the parent has scored: pools and sessions exist
    list(score_images_with(load_face_quality_detector(), find_images([str(frames)])))
    with multiprocessing.get_context('fork').Pool(2) as pool:
        assert pool.map_async(_score_in_child, paths).get(timeout=120) == expected


# 7. EXIF orientation
@pytest.mark.parametrize('orientation', [6, 8])
def test_exif_orientation_is_applied(tmp_path, orientation):
    stored = Image.new('RGB', (256, 128), (20, 20, 230))
    stored.paste((230, 20, 20), (0, 0, 64, 128))  # red on the stored left
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / 'rotated.jpg'
    stored.save(path, exif=exif.tobytes(), quality=95)
    shown = load_rgb_image(str(path))
    assert shown.size == (128, 256)
    red_at_top = shown.getpixel((64, 10))[0] > 200
    assert red_at_top == (orientation == 6)  # 6 turns the stored left to the top, 8 to the bottom


# 8. NaN probabilities: refused at load, and an error for the image they come from
def nan_for_pure_red_onnx() -> bytes:
    """The colour classifier's logits divided by (1 - red), so a pure red image gives infinities."""
    from onnx import TensorProto, helper, numpy_helper
    from tests.support.fake_hub import COLOUR_WEIGHTS
    weights = np.array([COLOUR_WEIGHTS[name] for name in QUALITY_CLASSES], dtype=np.float32).T * 3
    nodes = [
        helper.make_node('GlobalAveragePool', ['input'], ['pooled']),
        helper.make_node('Flatten', ['pooled'], ['flat'], axis=1),
        helper.make_node('MatMul', ['flat', 'weights'], ['logits']),
        helper.make_node('Gather', ['flat', 'red_index'], ['red'], axis=1),
        helper.make_node('Sub', ['one', 'red'], ['gap']),
        helper.make_node('Div', ['logits', 'gap'], ['scaled']),
        helper.make_node('Softmax', ['scaled'], ['output'], axis=1),
    ]
    graph = helper.make_graph(
        nodes, 'nan_classifier', [helper.make_tensor_value_info('input', TensorProto.FLOAT, ['batch', 3, None, None])],
        [helper.make_tensor_value_info('output', TensorProto.FLOAT, ['batch', len(QUALITY_CLASSES)])],
        [numpy_helper.from_array(weights, 'weights'), numpy_helper.from_array(np.array([0], np.int64), 'red_index'),
         numpy_helper.from_array(np.array([[1.0]], np.float32), 'one')])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 14)])
    model.ir_version = 8
    entry = model.metadata_props.add()
    entry.key, entry.value = 'classes', json.dumps(QUALITY_CLASSES)
    return model.SerializeToString()


def test_nan_probabilities_fail_their_image_only(tmp_path):
    files = {**classifier_repo_files(), 'model.onnx': nan_for_pure_red_onnx()}
    stages = classifier_stages()
    stages[0]['interpolation'] = 'nearest'  # a pure red crop stays pure red
    files['preprocessor_config.json'] = json.dumps({'stages': stages}).encode()
    faces = load_face_quality_detector(write_local_dir(str(tmp_path / 'model'), files), crop='face', margin=0.0)
    root = tmp_path / 'frames'
    root.mkdir()
    draw_scene((256, 256), heads=[(0, 0, CLASS_COLOURS['good'])])[0].save(root / 'blue.png')
    Image.new('RGB', (256, 256), (255, 0, 0)).save(root / 'red.png')
    results = {os.path.basename(r.image.path): r for r in score_images_with(faces, find_images([str(root)]))}
    assert results['blue.png'].error is None and results['blue.png'].faces
    assert 'red.png' in results['red.png'].error and 'no probabilities' in results['red.png'].error
    with pytest.raises(Exception, match='no probabilities'):
        faces.detect(str(root / 'red.png'))


def test_a_model_that_gives_nan_is_refused_at_load(tmp_path):
    files = classifier_repo_files()
    stages = classifier_stages()
    stages[-1] = {'type': 'normalize', 'mean': [0.5, 0.5, 0.5], 'std': [0.0, 0.5, 0.5]}
    files['preprocessor_config.json'] = json.dumps({'stages': stages}).encode()
    with pytest.raises(ModelNotAvailableError, match='std of 0'):
        load_face_quality_model(write_local_dir(str(tmp_path / 'std0'), files))


# 9. 16-bit and float images by their mode's range
def test_sixteen_bit_and_float_images_keep_their_brightness():
    dark = Image.new('I;16', (8, 8), 200)  # 200 of 65535: nearly black
    assert dark.mode == 'I;16' and load_rgb_image(dark).getpixel((0, 0)) == (1, 1, 1)
    bright = Image.new('I;16', (8, 8), 65535)
    assert load_rgb_image(bright).getpixel((0, 0)) == (255, 255, 255)
    grey = Image.fromarray(np.full((8, 8), 0.5, np.float32))  # float images are in [0, 1]
    assert grey.mode == 'F' and load_rgb_image(grey).getpixel((0, 0)) == (128, 128, 128)


# 10. classes that do not match the output
@pytest.mark.parametrize('classes, message', [(['poor', 'ok', 'good', 'good'], 'each named once'),
                                              (['poor', 'ok', 'good'], 'returned shape'),
                                              (['poor'], 'two or more classes')])
def test_classes_that_do_not_fit_the_model_are_refused(tmp_path, classes, message):
    files = classifier_repo_files()
    from onnx import load_from_string
    graph = load_from_string(files['model.onnx'])
    for entry in graph.metadata_props:
        if entry.key == 'classes':
            entry.value = json.dumps(classes)
    files['model.onnx'] = graph.SerializeToString()
    with pytest.raises(ModelNotAvailableError, match=message):
        load_face_quality_model(write_local_dir(str(tmp_path / 'bad'), files))


# 12. preprocessing stages are checked at load
@pytest.mark.parametrize('change, message', [
    (lambda stages: stages[0].update(size=100000), 'resizes to 100000'),
    (lambda stages: stages[1].update(size=[0, 0]), 'not a positive whole number'),
    (lambda stages: stages.pop(2), 'no to_tensor stage'),
])
def test_bad_preprocessing_stages_are_refused(tmp_path, change, message):
    files = classifier_repo_files()
    stages = classifier_stages()
    change(stages)
    files['preprocessor_config.json'] = json.dumps({'stages': stages}).encode()
    directory = write_local_dir(str(tmp_path / 'model'), files)
    with pytest.raises(ModelNotAvailableError, match=message):
        load_face_quality_model(directory)
    result = run('score', tmp_path, '--model', directory, check_code=3)
    assert message in result.stderr and 'Traceback' not in result.stderr


def test_a_json_file_with_a_byte_order_mark_is_read(tmp_path):
    files = classifier_repo_files()
    files['preprocessor_config.json'] = '\ufeff'.encode('utf-8') + files['preprocessor_config.json']
    model = load_face_quality_model(write_local_dir(str(tmp_path / 'bom'), files))
    assert model.stages == classifier_stages()


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
    assert meta['model'] == 'caformer_s36.head_crop' and len(meta['commit']) == 40 and meta['crop'] == 'head'


# 14. the same image spelled differently is scored once
def test_the_same_image_spelled_differently_is_one_image(frames, tmp_path):
    os.symlink('..', frames / 'up')
    spellings = [str(frames), str(frames) + '/', os.path.relpath(frames), str(frames / 'up' / 'frames' / '0.png'),
                 str(frames) + '/**/*.png']
    images = find_images(spellings)
    assert sorted(os.path.realpath(image.path) for image in images) == sorted(
        str(frames / f'{index}.png') for index in range(3))


# 15. two runs on one output
def test_a_second_run_on_the_same_output_says_it_is_in_use(frames, tmp_path):
    import fcntl
    output = tmp_path / 'scores.jsonl'
    first = subprocess.Popen([sys.executable, '-c', f"""
import sys, time
from imgutils_facequal.cli.records import open_output
out = open_output({str(output)!r}, 'jsonl')  # what a running score holds, from its start to its end
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


# 17. line breaks in names
@pytest.mark.parametrize('fmt', ['jsonl', 'csv'])
def test_names_with_line_breaks_resume(tmp_path, fmt):
    root = tmp_path / 'odd names'
    root.mkdir()
    for index, odd in enumerate(['a\nb', 'c\u2028d', 'e\u0085f', 'g\x1ch', 'i\rj']):
        scene(index)[0].save(root / f'{odd}.png')
    output = tmp_path / f'scores.{fmt}'
    run('score', root, '-o', output, check_code=0)
    data = output.read_bytes()
    again = run('score', root, '-o', output, check_code=0)
    assert '5 images skipped' in again.stderr and output.read_bytes() == data
    if fmt == 'csv':
        import csv
        with open(output, newline='', encoding='utf-8') as file:
            assert len({row['image'] for row in csv.DictReader(file)}) == 5


# 19. output problems are found before any model loads, and reported without a traceback
def test_output_problems_are_clear(frames, tmp_path):
    missing = run('score', frames, '-o', tmp_path / 'no-such-folder' / 'scores.jsonl', check_code=3)
    assert 'does not exist' in missing.stderr and 'Traceback' not in missing.stderr
    read_only = tmp_path / 'read-only.jsonl'
    read_only.write_text('')
    read_only.chmod(0o444)
    if os.geteuid() != 0:  # root writes anyway
        assert 'permission denied' in run('score', frames, '-o', read_only, check_code=3).stderr
    full = run('score', frames, '-o', '/dev/full', check_code=3, timeout=120)
    assert 'No space left on device' in full.stderr and 'Traceback' not in full.stderr
    piped = subprocess.run(f'{SCRIPT} score {frames} -o /dev/stdout | cat', shell=True, capture_output=True,
                           text=True, timeout=120)
    assert piped.returncode == 0 and piped.stdout.count('\n') >= 3


# 20 and 21. a hub that cannot be reached
def test_an_unreachable_hub_gives_a_clear_message(frames, tmp_path):
    cache = tmp_path / 'hub'
    write_repo(str(cache), 'deepghs-cv/cls-bangumibase-face-quality.caformer_s36.head_crop', classifier_repo_files())
    env = dict(os.environ, HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE='0', HF_ENDPOINT='http://127.0.0.1:9',
               HF_HUB_ETAG_TIMEOUT='2', HF_HUB_DOWNLOAD_TIMEOUT='2')
    started = time.time()
    result = subprocess.run([SCRIPT, 'score', str(frames)], capture_output=True, text=True, env=env, timeout=300,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 3, result.stderr[-2000:]
    assert 'could not be reached' in result.stderr and 'imgutils-facequal download' in result.stderr
    assert 'Traceback' not in result.stderr and result.stderr.count('\n') < 10
    download = subprocess.run([SCRIPT, 'download', '--no-detectors', 'someone/not-cached'], capture_output=True,
                              text=True, env=env, timeout=300)
    assert download.returncode == 3 and 'could not be reached' in download.stderr
    detectors = subprocess.run([SCRIPT, 'download', 'caformer_s36.head_crop'], capture_output=True, text=True,
                               env=env, timeout=300)
    assert detectors.returncode == 3 and 'could not be reached' in detectors.stderr
    assert 'has no' not in detectors.stderr
    assert time.time() - started < 240


# 22. backend='auto' offline, with the transformers files cached and no model.onnx, and no marker
def test_auto_falls_back_to_transformers_offline_without_a_marker(timm_repos, hub_cache_dir):
    from imgutils_facequal.backends.transformers import FaceQualityTransformersModel
    from tests.support.timm_repos import timm_repo_files
    write_repo(hub_cache_dir, 'test-org/timm-no-onnx-no-marker', timm_repo_files(seed=7, with_onnx=False),
               known_missing=())
    model = load_face_quality_model('test-org/timm-no-onnx-no-marker', backend='auto')
    assert isinstance(model, FaceQualityTransformersModel)


# 23. repository code runs with notice, and can be refused
def test_repository_code_is_announced_and_can_be_refused(timm_repos, monkeypatch, caplog):
    from imgutils_facequal import BackendNotAvailableError
    from tests.support.models import forget_loaded_models
    forget_loaded_models()
    monkeypatch.setenv('IMGUTILS_FACEQUAL_TRUST_REMOTE_CODE', '0')
    with pytest.raises(BackendNotAvailableError, match='IMGUTILS_FACEQUAL_TRUST_REMOTE_CODE=0 refuses'):
        load_face_quality_model(timm_repos['with_onnx'], backend='transformers', device='cpu')
    monkeypatch.delenv('IMGUTILS_FACEQUAL_TRUST_REMOTE_CODE')
    from imgutils_facequal.backends import transformers
    transformers._told_remote_code.clear()
    with caplog.at_level('WARNING', logger='imgutils_facequal'):
        load_face_quality_model(timm_repos['with_onnx'], backend='transformers', device='cpu')
        forget_loaded_models()
        load_face_quality_model(timm_repos['with_onnx'], backend='transformers', device='cpu')
    notices = [record for record in caplog.records if 'trust_remote_code' in record.getMessage()]
    assert len(notices) == 1


# 24. a plugin that fails to import
def test_a_broken_plugin_is_skipped_with_a_warning(tmp_path):
    site = tmp_path / 'site'
    (site / 'broken_plugin-1.0.dist-info').mkdir(parents=True)
    (site / 'broken_plugin-1.0.dist-info' / 'METADATA').write_text('Metadata-Version: 2.1\nName: broken-plugin\n'
                                                                   'Version: 1.0\n')
    (site / 'broken_plugin-1.0.dist-info' / 'entry_points.txt').write_text(
        '[imgutils_facequal]\nbroken = broken_plugin\n')
    (site / 'broken_plugin.py').write_text('raise ImportError("a dependency is missing")\n')
    env = {key: value for key, value in os.environ.items() if key != 'IMGUTILS_FACEQUAL_PLUGINS'}
    env['PYTHONPATH'] = os.pathsep.join([str(site)] + sys.path)
    listed = subprocess.run([SCRIPT, 'plugins'], capture_output=True, text=True, env=env, timeout=120)
    assert listed.returncode == 0 and 'face_quality' in listed.stdout
    assert "Skipping the imgutils-facequal plugin 'broken'" in listed.stderr and 'a dependency is missing' in \
        listed.stderr
    named = subprocess.run([SCRIPT, 'plugins'], capture_output=True, text=True, timeout=120,
                           env={**env, 'IMGUTILS_FACEQUAL_PLUGINS': 'broken-plugin'})
    assert named.returncode != 0 and 'a dependency is missing' in named.stderr


# 25. usage problems found before any model loads
def test_usage_problems_are_found_first(frames, tmp_path):
    output = tmp_path / 'scores.jsonl'
    typo = run('score', str(frames) + '-typo', '-o', output, check_code=2)
    assert 'No such file, folder or matching glob' in typo.stderr and not output.exists()
    assert 'matching glob' in run('score', str(frames / '*.jpeg'), check_code=2).stderr
    (tmp_path / 'empty').mkdir()
    empty = run('score', tmp_path / 'empty', check_code=0)
    assert 'no images found' in empty.stderr
    nose = run('score', frames, '-o', output, '--detector', 'nose', check_code=3)
    assert "Unknown detector 'nose'" in nose.stderr and (not output.exists() or output.read_text() == '')
    with pytest.raises(InputNotFoundError):
        find_images([str(frames / 'nothing-here.png')])


# 26. exit codes
@pytest.mark.extras
def test_sigint_while_models_load_exits_130(frames):
    process = subprocess.Popen([SCRIPT, 'score', str(frames), '--backend', 'transformers', '--model',
                                'test-org/timm-face-quality'], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL, preexec_fn=_default_sigint)
    time.sleep(1.5)  # importing torch and loading: long before any image
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr[-2000:]
    assert b'Traceback' not in stderr


def test_eval_crops_with_nothing_readable_fails(tmp_path):
    (tmp_path / 'images').mkdir()
    (tmp_path / 'labels.csv').write_text('image,label,head_x0,head_y0,head_x1,head_y1\nmissing.png,good,0,0,9,9\n')
    result = run('eval-crops', '--images', tmp_path / 'images', '--labels', tmp_path / 'labels.csv', check_code=1)
    assert 'None of the 1 labelled images could be evaluated' in result.stderr


# 28. small things
def test_summary_counts_in_the_models_class_order(frames):
    result = run('score', frames / '0.png', check_code=0)
    assert 'Done: 1 image in' in result.stderr
    line = next(line for line in result.stderr.splitlines() if 'faces per class' in line)
    assert [part.split()[0] for part in line.split(': ', 1)[1].split(', ')] == QUALITY_CLASSES
    assert 'quality: mean' in result.stderr and 'quartiles' in result.stderr


def test_warnings_are_one_line(frames):
    result = run('score', frames, '--model', 'caformer_s36', '--crop', 'head', check_code=0)
    warning = [line for line in result.stderr.splitlines() if 'framing-sensitive' in line]
    assert len(warning) == 1 and warning[0].startswith('Warning: ')
    assert 'warnings.warn' not in result.stderr


def test_device_cuda_without_a_gpu_says_so(frames):
    result = run('score', frames, '--device', 'cuda', check_code=0)
    assert 'the model runs on the CPU' in result.stderr


def test_a_local_file_named_like_a_url_is_read_as_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    solid_image(CLASS_COLOURS['good']).save('http:face.png', format='PNG')
    assert load_rgb_image('http:face.png').size == (48, 40)


def test_bytes_name_the_row_id():
    faces = load_face_quality_detector()
    result, = score_images_with(faces, [InputImage('row-17', data=b'not an image')])
    assert result.error.startswith('row-17: ')


# 27. long first loads say what they do (and -q keeps them quiet)
def test_a_first_load_says_it_rewrites_the_graph(timm_repos, frames, tmp_path):
    env = dict(os.environ, IMGUTILS_FACEQUAL_HOME=str(tmp_path / 'home'))
    loud = subprocess.run([SCRIPT, 'score', str(frames), '--model', timm_repos['caformer']], capture_output=True,
                          text=True, env=env, timeout=300)
    assert loud.returncode == 0 and 'imgutils-facequal: Rewrote' in loud.stderr
    env['IMGUTILS_FACEQUAL_HOME'] = str(tmp_path / 'another-home')
    quiet = subprocess.run([SCRIPT, 'score', str(frames), '--model', timm_repos['caformer'], '-q'],
                           capture_output=True, text=True, env=env, timeout=300)
    assert quiet.returncode == 0 and quiet.stderr == ''
    # a graph with nothing to rewrite (the fake hub's small default) says nothing about rewriting
    env['IMGUTILS_FACEQUAL_HOME'] = str(tmp_path / 'a-third-home')
    plain = subprocess.run([SCRIPT, 'score', str(frames)], capture_output=True, text=True, env=env, timeout=300)
    assert plain.returncode == 0 and 'Rewr' not in plain.stderr, plain.stderr


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


# 11. a cached rewrite that was altered or cut short is made again from the original
def same_scores(first, second) -> bool:
    return len(first) == len(second) and max(abs(a[name] - b[name]) for a, b in zip(first, second) for name in a) < 1e-6


def test_a_damaged_cached_rewrite_is_made_again(timm_repos, tmp_path, monkeypatch):
    import onnx
    from onnx import numpy_helper
    from imgutils_facequal.graphs import cache as graph_cache
    from tests.support.models import forget_loaded_models
    monkeypatch.setenv('IMGUTILS_FACEQUAL_HOME', str(tmp_path))
    forget_loaded_models()
    repo = timm_repos['caformer']
    model = load_face_quality_model(repo)
    rewritten, record = model.run_path, os.path.join(os.path.dirname(model.run_path), 'rewrite.json')
    images = [solid_image(colour, size=(64, 64)) for colour in CLASS_COLOURS.values()]
    expected = model.scores(images)

    graph = onnx.load(rewritten)  # weights scaled: still a valid graph, with other answers
    for tensor in graph.graph.initializer:
        if tensor.data_type == onnx.TensorProto.FLOAT and len(tensor.dims) == 2:
            tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor) * 3, tensor.name))
    onnx.save(graph, rewritten)
    assert graph_cache.cached_graph(model.onnx_path) is None  # its digest no longer matches
    forget_loaded_models()
    again = load_face_quality_model(repo)
    assert again.run_path == rewritten and same_scores(again.scores(images), expected)

    with open(rewritten, 'r+b') as file:  # cut short
        file.truncate(os.path.getsize(rewritten) // 2)
    forget_loaded_models()
    assert same_scores(load_face_quality_model(repo).scores(images), expected)

    with open(record, 'r+b') as file:  # its record cut short: made again once, then cached again
        file.truncate(10)
    forget_loaded_models()
    load_face_quality_model(repo)
    calls = []
    monkeypatch.setattr(graph_cache, 'rewrite_onnx_graph', lambda *args: calls.append(args) or (_ for _ in ()).throw(
        AssertionError('rewrote again')))
    forget_loaded_models()
    assert load_face_quality_model(repo).run_path == rewritten and calls == []
