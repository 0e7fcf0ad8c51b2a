"""Hardening, faults during a run: a detector or a model that misbehaves on one image fails that image only;
Ctrl-C ends a run at once, also while models load; pools forked after scoring still work.

Each test names the item of the hardening issue it covers; each failed before its fix.
"""
import json
import multiprocessing
import os
import signal
import time

import numpy as np
import pytest
from PIL import Image

from imgutils_facequal import (detect_face_quality, find_images, load_face_quality_detector, register_plugin,
                               score_images_with, unregister_plugin)
from tests.support.cli import scene, start_process, write_scenes
from tests.support.fake_hub import (CLASS_COLOURS, QUALITY_CLASSES, classifier_repo_files, classifier_stages,
                                    draw_scene, write_local_dir)


@pytest.fixture
def frames(tmp_path):
    """Three scenes of two or three faces each."""
    return write_scenes(tmp_path / 'frames', 3)


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


# 8. NaN probabilities: an error for the image they come from (a model that gives NaN for every image is refused
# at load: test_hardening_models)
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


# 3. Ctrl-C (a signal to a real process)
def test_ctrl_c_ends_a_run_within_seconds(tmp_path):
    root = tmp_path / 'many'
    root.mkdir()
    for index in range(40):
        scene(index)[0].save(root / f'{index:03d}.png')
    output = tmp_path / 'scores.jsonl'
    process = start_process('score', root, '-o', output, '--workers', '2')
    deadline = time.time() + 120
    while time.time() < deadline and not (output.exists() and output.stat().st_size):
        time.sleep(0.01)
    sent = time.time()
    process.send_signal(signal.SIGINT)
    process.wait(timeout=20)
    assert process.returncode == 130 and time.time() - sent < 10


# 26. exit codes: Ctrl-C while the models load
@pytest.mark.extras
def test_sigint_while_models_load_exits_130(frames):
    process = start_process('score', frames, '--backend', 'transformers', '--model', 'test-org/timm-face-quality')
    time.sleep(1.5)  # importing torch and loading: long before any image
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr[-2000:]
    assert b'Traceback' not in stderr


# 6. forking after use
def _score_in_child(path):
    return [face.label for face in detect_face_quality(path)]


def test_forked_workers_after_scoring_in_process(frames):
    paths = [str(path) for path in sorted(frames.iterdir())]
    expected = [_score_in_child(path) for path in paths]  # the parent has scored: pools and sessions exist
    list(score_images_with(load_face_quality_detector(), find_images([str(frames)])))
    with multiprocessing.get_context('fork').Pool(2) as pool:
        assert pool.map_async(_score_in_child, paths).get(timeout=120) == expected
