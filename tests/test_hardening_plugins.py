"""Hardening, third round: plugins and options (issue 33, items 21 to 25 and 28, and two of item 32).

Each test names the item it covers; each failed before its fix.
"""
import math
import os
import re
import subprocess
import sys
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from imgutils_facequal import (FaceLocator, PluginError, ScoringSettings, detect_face_quality, hookimpl,
                               list_detectors, load_face_quality_detector, register_plugin, unregister_plugin)
from imgutils_facequal import geometry
from imgutils_facequal.geometry import box_area, intersection_area
from imgutils_facequal.pipeline import InputImage, find_images, score_images_with
from tests.support.cli import read_jsonl, run, write_scenes
from tests.support.fake_hub import (FACE_DETECTOR_REPO, HEAD_DETECTOR_REPO, classifier_repo_files,
                                    face_detector_files, head_detector_files, write_repo)
from tests.test_hardening_models import closed_port


@pytest.fixture
def frames(tmp_path):
    return write_scenes(tmp_path / 'frames', 3)


class BoxesDetector:
    """A plugin whose detector ``boxes`` returns the boxes it was given, whatever the image."""

    def __init__(self, boxes):
        self.boxes = boxes

    @hookimpl
    def register_detectors(self, register):
        register('boxes', lambda image, **options: [(box, 'face', 0.9) for box in self.boxes])


@pytest.fixture
def boxes_detector():
    plugins = []

    def install(boxes):
        plugin = BoxesDetector(boxes)
        register_plugin(plugin, name=f'boxes-{len(plugins)}')
        plugins.append(f'boxes-{len(plugins)}')
        return plugin
    yield install
    for name in plugins:
        unregister_plugin(name)


# 21. detections outside the image: clipped to it, or no face
boxes = st.tuples(*[st.floats(-500, 500, allow_nan=False)] * 4)
sizes = st.tuples(st.integers(1, 300), st.integers(1, 300))


@given(boxes, sizes)
def test_a_clipped_box_is_the_part_inside_the_image_or_none(box, size):
    clipped = geometry.clip_box(box, size)
    inside = intersection_area(box, (0, 0, *size))
    if clipped is None:
        assert inside == 0
    else:
        x0, y0, x1, y1 = clipped
        assert 0 <= x0 < x1 <= size[0] and 0 <= y0 < y1 <= size[1]
        assert math.isclose(box_area(clipped), inside, rel_tol=1e-9, abs_tol=1e-9)


def test_detections_outside_the_image_are_no_faces(boxes_detector):
    boxes_detector([(300, 300, 340, 340), (-50, -50, -10, -10), (250, 100, 290, 140), (-20, 10, 30, 50)])
    image = Image.new('RGB', (256, 256), (20, 20, 230))
    faces = detect_face_quality(image, detector='boxes', crop='face', margin=0)
    assert [face.bbox for face in faces] == [(250, 100, 256, 140), (0, 10, 30, 50)]
    assert [face.crop_bbox for face in faces] == [(250, 100, 256, 140), (0, 10, 30, 50)]
    located = FaceLocator(detector='boxes', crop='head').locate(image)
    assert [face.bbox for face in located] == [(250, 100, 256, 140), (0, 10, 30, 50)]


@pytest.fixture
def crops_made(monkeypatch):
    """How many face crops of a 256 x 256 image have been made so far (Pillow's own crop, counted; the
    classifier's preprocessing crops its smaller images too)."""
    made = [0]
    crop = Image.Image.crop

    def counted(self, box=None):
        made[0] += self.size == (256, 256)
        return crop(self, box)
    monkeypatch.setattr(Image.Image, 'crop', counted)
    return made


def held_at_each_forward_pass(classifier, crops_made, monkeypatch):
    """Crops made but not yet scored, each time the classifier runs a forward pass."""
    held, scored = [], [0]
    predict = classifier.predict

    def observed(batch):
        probabilities = predict(batch)
        held.append(crops_made[0] - scored[0])
        scored[0] += len(probabilities)
        return probabilities
    monkeypatch.setattr(classifier, 'predict', observed)
    return held


def test_an_image_with_many_faces_is_cropped_a_batch_at_a_time(boxes_detector, crops_made, monkeypatch, tmp_path):
    boxes_detector([(x, y, x + 16, y + 16) for x in range(0, 240, 24) for y in range(0, 240, 40)])  # 60 faces
    faces = load_face_quality_detector(detector='boxes', crop='face', margin=0)
    held = held_at_each_forward_pass(faces.classifier, crops_made, monkeypatch)
    image = Image.new('RGB', (256, 256), (20, 230, 20))
    assert len(faces.detect(image)) == 60
    batch = faces.classifier.default_batch_size
    assert held and max(held) <= batch
    image.save(tmp_path / 'crowd.png')
    held.clear()
    crops_made[0] = 0
    result, = score_images_with(faces, [InputImage(str(tmp_path / 'crowd.png'))], batch_size=4, workers=1)
    assert result.error is None and len(result.faces) == 60 and [face.label for face in result.faces] == ['ok'] * 60
    assert max(held) <= 2 * 4  # a batch made ahead, and the one being scored; never the 60 at once


# 22. a plugin whose registration hook raises is skipped, with a warning that names it and the error
class BrokenPlugin:
    @hookimpl
    def register_detectors(self, register):
        register('half_registered', lambda image, **options: [])
        raise RuntimeError('cannot find its weights')


def test_a_plugin_whose_hook_raises_is_skipped_with_a_warning(frames, monkeypatch):
    from imgutils_facequal.plugins import _registry
    register_plugin(BrokenPlugin(), name='broken-hook')
    try:
        with pytest.warns(RuntimeWarning, match="plugin 'broken-hook'.*RuntimeError: cannot find its weights"):
            names = [item['name'] for item in list_detectors()]
        assert 'face' in names and 'half_registered' not in names
        for args in (['plugins'], ['score', frames]):
            _registry.cache_clear()  # as a new process finds its plugins
            result = run(*args, check_code=0)
            assert "Warning: Skipping the detectors of the imgutils-facequal plugin 'broken-hook'" in result.stderr
        rows = read_jsonl_of(result.stdout)
        assert len(rows) == 7 and not any(row.get('error') for row in rows)  # 2 + 3 + 2 faces
        monkeypatch.setenv('IMGUTILS_FACEQUAL_PLUGINS', 'someone-chose-plugins')  # chosen: an error, not skipped
        _registry.cache_clear()
        with pytest.raises(PluginError, match="'broken-hook' is broken"):
            list_detectors()
    finally:
        unregister_plugin('broken-hook')


# 23. options are checked when they are parsed: NaN, infinities, infer sizes a detector cannot run at
@pytest.mark.parametrize('option, value', [('--head-infer-size', '33'), ('--head-infer-size', '32'),
                                           ('--head-infer-size', '100000'), ('--conf-threshold', 'nan'),
                                           ('--iou-threshold', 'nan'), ('--margin', 'inf'), ('--margin', 'nan')])
def test_bad_scoring_options_are_usage_errors(frames, tmp_path, option, value):
    output = tmp_path / 'scores.jsonl'
    result = run('score', frames, '-o', output, option, value, check_code=2)
    assert f"Invalid value for '{option}'" in result.stderr and not output.exists()


@pytest.mark.parametrize('args', [['filter', '--min-quality', 'nan', '--out', 'kept'],
                                  ['score', '--log-interval', 'nan'], ['score', '--log-interval', 'inf']])
def test_nan_and_infinity_are_refused_by_other_options(frames, tmp_path, args):
    result = run(*args[:1], frames, *args[1:], check_code=2, cwd=tmp_path)
    assert 'is not a finite number' in result.stderr and not (tmp_path / 'kept').exists()


@pytest.mark.parametrize('options, message', [({'head_infer_size': 32}, 'multiple of 32 from 64 to 4096'),
                                              ({'head_infer_size': 8192}, 'multiple of 32 from 64 to 4096'),
                                              ({'head_infer_size': 320.0}, 'multiple of 32'),
                                              ({'conf_threshold': float('nan')}, 'conf_threshold must be'),
                                              ({'margin': float('inf')}, 'margin must be')])
def test_the_api_refuses_the_same_values(options, message):
    with pytest.raises(ValueError, match=message):
        ScoringSettings(**options)
    with pytest.raises(ValueError, match=message):
        detect_face_quality(Image.new('RGB', (64, 64)), **options)


# 32. an unknown model or detector name is a usage error
@pytest.mark.parametrize('args, message', [(['--model', 'no-such-model'], "Unknown face-quality model 'no-such-model'"),
                                           (['--detector', 'nose'], "Unknown detector 'nose'"),
                                           (['--head-detector', 'ears'], "Unknown detector 'ears'")])
def test_an_unknown_name_is_a_usage_error(frames, tmp_path, args, message):
    output = tmp_path / 'scores.jsonl'
    result = run('score', frames, '-o', output, *args, check_code=2)
    assert message in result.stderr and not output.exists()


# 24. our own outputs inside the input are not read as inputs on a rerun
def test_outputs_inside_the_input_are_not_scored(frames):
    command = ('score', frames, '-o', frames / 'scores.png', '--format', 'jsonl', '--visualize', frames / 'drawn')
    run(*command, check_code=0)
    assert len(os.listdir(frames / 'drawn')) == 3
    again = run(*command, check_code=0)
    assert 'skipped, already in the output' in again.stderr
    rows = read_jsonl(frames / 'scores.png')
    assert {row['image'] for row in rows} == {str(frames / f'{index}.png') for index in range(3)}
    assert not any(row.get('error') for row in rows) and len(os.listdir(frames / 'drawn')) == 3


def test_find_images_leaves_out_what_it_is_told_to(frames):
    (frames / 'drawn').mkdir()
    Image.new('RGB', (8, 8)).save(frames / 'drawn' / '0.png')
    Image.new('RGB', (8, 8)).save(frames / 'out.png')
    found = find_images([str(frames)], exclude=[str(frames / 'drawn'), str(frames / 'out.png')])
    assert sorted(os.path.basename(image.path) for image in found) == ['0.png', '1.png', '2.png']


# 25. an image a pixel wide has no face: no error
@pytest.mark.parametrize('size', [(1, 1), (1, 20000), (20000, 1), (2, 2)])
def test_an_image_a_pixel_wide_has_no_face_and_no_error(tmp_path, size):
    Image.new('RGB', size, (250, 250, 250)).save(tmp_path / 'thin.png')
    rows = read_jsonl_of(run('score', tmp_path / 'thin.png', check_code=0).stdout)
    assert len(rows) >= 1 and not any(row.get('error') for row in rows)
    assert all(row['bbox'][2] > row['bbox'][0] and row['bbox'][3] > row['bbox'][1] for row in rows if row.get('bbox'))


def read_jsonl_of(text):
    import json
    return [json.loads(line) for line in text.splitlines()]


# 32. the model's class order in the summary, the threshold table and the report
def test_classes_are_in_the_models_order_everywhere(frames, tmp_path):
    scores = tmp_path / 'scores.jsonl'
    scored = run('score', frames, '-o', scores, '--model', 'test-org/reversed-classes', check_code=0)
    summary = re.search(r'faces per class: (.*)', scored.stderr).group(1)
    order = [part.split()[0] for part in summary.split(', ')]
    assert order == ['excellent', 'good', 'ok', 'poor']  # the model lists them best first
    table = run('filter', '--scores', scores, '--thresholds', check_code=0)
    listed = re.search(r'faces per class: (.*)', table.stdout + table.stderr).group(1)
    assert [part.split()[0] for part in listed.split(', ')] == order
    thresholds = re.findall(r'--min-label (\w+)', table.stdout + table.stderr)
    assert thresholds == order
    run('report', scores, '-o', tmp_path / 'report', check_code=0)
    page = (tmp_path / 'report' / 'index.html').read_text(encoding='utf-8')
    sections = re.findall(r'<section class="class" data-class="(\w+)"', page)
    assert sections == order


# 28. models cached, the hub unreachable, HF_HUB_OFFLINE unset: the cache is used, and said so once
def hub_env(cache, offline):
    return dict(os.environ, HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE='1' if offline else '0',
                HF_ENDPOINT=f'http://127.0.0.1:{closed_port()}', HF_HUB_ETAG_TIMEOUT='2', HF_HUB_DOWNLOAD_TIMEOUT='2')


def command(env, *args):
    code = 'import sys; sys.argv[0] = "imgutils-facequal"; from imgutils_facequal.cli import main; main()'
    return subprocess.run([sys.executable, '-c', code, *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=300, stdin=subprocess.DEVNULL)


def test_cached_detectors_are_used_when_the_hub_cannot_be_reached(frames, tmp_path):
    cache = tmp_path / 'hub'
    write_repo(str(cache), 'deepghs-cv/cls-bangumibase-face-quality.caformer_s36.head_crop', classifier_repo_files())
    write_repo(str(cache), FACE_DETECTOR_REPO, face_detector_files())
    write_repo(str(cache), HEAD_DETECTOR_REPO, head_detector_files())
    args = ('score', frames, '--head-localisation', 'paired')
    offline = command(hub_env(cache, offline=True), *args)
    assert offline.returncode == 0, offline.stderr
    started = time.time()
    unreachable = command(hub_env(cache, offline=False), *args)
    assert unreachable.returncode == 0, unreachable.stderr[-3000:]
    assert unreachable.stdout == offline.stdout  # the same faces, from the same cached models
    notices = [line for line in unreachable.stderr.splitlines() if 'could not be reached' in line]
    assert len(notices) == 1 and 'HF_ENDPOINT' in notices[0] and 'HF_HUB_OFFLINE=1' in notices[0]
    assert 'Retrying' not in unreachable.stderr and time.time() - started < 60


def test_a_detector_not_cached_says_why_at_once(frames, tmp_path):
    cache = tmp_path / 'hub'
    write_repo(str(cache), 'deepghs-cv/cls-bangumibase-face-quality.caformer_s36.head_crop', classifier_repo_files(),
               known_missing=())  # nothing recorded as missing: huggingface_hub would ask the hub, and retry
    started = time.time()
    result = command(hub_env(cache, offline=False), 'score', frames)
    assert result.returncode == 3, result.stderr[-3000:]
    assert 'Retrying' not in result.stderr and time.time() - started < 30
    error = result.stderr.strip().splitlines()[-1]
    assert "The face detector cannot get its model 'face_detect_v1.4_s'" in error
    assert 'could not be reached' in error and 'HF_ENDPOINT' in error and 'HF_HUB_OFFLINE=1' in error
    assert 'imgutils-facequal download' in error
    offline = command(hub_env(cache, offline=True), 'score', frames)
    assert offline.returncode == 3 and 'HF_HUB_OFFLINE=1 is set' in offline.stderr
