import math
import warnings

import numpy as np
import pytest
from PIL import Image

from tests.support.fake_hub import CLASS_COLOURS, draw_scene, solid_image
from imgutils_facequal import (
    FaceQualityResult,
    ModelNotAvailableError,
    NoFaceFoundError,
    PluginError,
    classify_face_quality,
    classify_face_quality_score,
    detect_face_quality,
    face_quality_value,
    load_face_quality_model,
    tag_faces,
    visualize_face_quality,
)
from imgutils_facequal import scoring as scoring_module
from imgutils_facequal.geometry import crop_box, face_to_head_box
from tests.support.models import count_forward_passes

SCENE_HEADS = [(0, 0, CLASS_COLOURS['good']), (2, 1, CLASS_COLOURS['poor']), (3, 3, CLASS_COLOURS['excellent'])]
SCENE_BARE = [(5, 0, CLASS_COLOURS['ok'])]


@pytest.fixture
def scene():
    return draw_scene((384, 256), heads=SCENE_HEADS, bare_faces=SCENE_BARE)


def by_position(results):
    return sorted(results, key=lambda result: (result.bbox[1], result.bbox[0]))


def test_every_face_found_box_by_box(scene):
    image, expected = scene
    results = by_position(detect_face_quality(image, head_localisation='paired'))
    assert [result.bbox for result in results] == [face for face, _, _ in expected]
    for result, (face, head, _) in zip(results, expected):
        assert isinstance(result, FaceQualityResult)
        assert result.detection_score > 0.5
        if head is not None:  # paired with the detected head
            assert result.head_bbox == tuple(map(float, head))
        else:  # no head around it: the documented expansion of the face box
            assert result.head_bbox == face_to_head_box(face)
        assert result.crop_bbox == crop_box(result.head_bbox, 0.5, image.size)


def test_scores_are_those_of_the_crops(scene):
    image, _ = scene
    for result in detect_face_quality(image):
        crop = image.crop(result.crop_bbox)
        assert result.scores == pytest.approx(classify_face_quality_score(crop), abs=1e-6)
        assert result.label == max(result.scores, key=result.scores.get)
        assert result.score == result.scores[result.label]
        assert result.quality == pytest.approx(face_quality_value(result.scores))
        assert 0.0 <= result.quality <= 1.0


def test_face_crops_without_margin_read_the_face_colour(scene):
    image, expected = scene
    results = by_position(detect_face_quality(image, crop='face', margin=0))
    labels = {colour: name for name, colour in CLASS_COLOURS.items()}
    assert [result.label for result in results] == [labels[colour] for _, _, colour in expected]
    assert all(result.crop_bbox == result.bbox for result in results)
    assert all(result.head_bbox is None for result in results)


def test_head_detector_and_estimated_heads(scene):
    image, expected = scene
    heads_only = by_position(detect_face_quality(image, detector='head'))
    assert [result.bbox for result in heads_only] == [head for _, head, _ in expected if head is not None]
    estimated = by_position(detect_face_quality(image, head_detector=None))
    assert [result.head_bbox for result in estimated] == [face_to_head_box(face) for face, _, _ in expected]


def test_full_crop(scene):
    image, _ = scene
    results = detect_face_quality(image, crop='full')
    assert len(results) == 4
    assert {result.crop_bbox for result in results} == {(0, 0, 384, 256)}
    assert results[0].scores == pytest.approx(classify_face_quality_score(image), abs=1e-6)


def test_detector_options_pass_through(scene):
    image, _ = scene
    everything = detect_face_quality(image)
    thresholds = sorted({round(r.detection_score, 4) - 1e-3 for r in everything}) + [1.0]
    counts = []
    for threshold in thresholds:
        kept = detect_face_quality(image, conf_threshold=threshold)
        assert [r.bbox for r in kept] == [r.bbox for r in everything if r.detection_score > threshold]
        counts.append(len(kept))
    assert counts[0] == 4 and counts[-1] == 0 and counts == sorted(counts, reverse=True)
    with pytest.raises(ModelNotAvailableError, match="face detector .*'face_detect_v9_x'.*deepghs/anime_face_detection"):
        detect_face_quality(image, detector_level='x', detector_version='v9')
    with pytest.raises(ModelNotAvailableError, match="head detector .*'head_detect_v2.0_n'"):
        detect_face_quality(image, detector='head', detector_level='n')


def test_min_label(scene):
    image, _ = scene
    everything = detect_face_quality(image, crop='face', margin=0)
    good_or_better = detect_face_quality(image, crop='face', margin=0, min_label='good')
    assert sorted(result.label for result in good_or_better) == ['excellent', 'good']
    assert len(everything) == 4
    with pytest.raises(ValueError, match='min_label'):
        detect_face_quality(image, min_label='great')


def test_min_quality_filters_the_quality_column(scene):
    image, _ = scene
    everything = detect_face_quality(image, crop='face', margin=0)
    threshold = sorted(face.quality for face in everything)[2]
    kept = detect_face_quality(image, crop='face', margin=0, min_quality=threshold)
    assert sorted(face.quality for face in kept) == sorted(face.quality for face in everything if face.quality >= threshold)
    assert len(kept) == 2
    with pytest.raises(TypeError, match="min_label='good'"):
        detect_face_quality(image, min_quality='good')


def test_no_faces():
    assert detect_face_quality(solid_image((0, 0, 0))) == []
    with pytest.raises(NoFaceFoundError, match='No face found'):
        classify_face_quality(solid_image((0, 0, 0)), crop='head')


def test_forward_passes_of_the_default_batch_size(scene, monkeypatch):
    image, _ = scene
    model = load_face_quality_model()
    passes = count_forward_passes(model, monkeypatch)
    results = detect_face_quality(image)
    assert len(results) == 4
    assert len(passes) == math.ceil(4 / model.default_batch_size) == 2


def test_image_is_decoded_once(scene, tmp_path, monkeypatch):
    image, _ = scene
    path = tmp_path / 'scene.png'
    image.save(path)
    opened = []
    original_open = Image.open
    monkeypatch.setattr(Image, 'open', lambda *args, **kwargs: opened.append(args[0]) or original_open(*args, **kwargs))
    assert len(detect_face_quality(str(path))) == 4
    assert opened == [str(path)]


def test_classifier_crop_option_uses_the_largest_face(scene):
    image, _ = scene
    largest = max(detect_face_quality(image), key=lambda r: (r.bbox[2] - r.bbox[0]) * (r.bbox[3] - r.bbox[1]))
    assert classify_face_quality_score(image, crop='head') == pytest.approx(largest.scores, abs=1e-6)
    assert classify_face_quality(image, crop='face', margin=0)[0] == 'excellent'
    with pytest.raises(ValueError, match='crop must be one of'):
        classify_face_quality(image, crop='ful')


def test_baseline_defaults_to_full_frames_and_warns_once_on_crops(scene):
    image, _ = scene
    scoring_module._warned_framing.clear()
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        results = detect_face_quality(image, model_name='caformer_s36')
    assert {result.crop_bbox for result in results} == {(0, 0, 384, 256)}
    with pytest.warns(UserWarning, match='0.249'):
        detect_face_quality(image, model_name='caformer_s36', crop='head')
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        detect_face_quality(image, model_name='caformer_s36', crop='face')
        classify_face_quality(image, model_name='caformer_s36', crop='head')


def test_results_draw_with_imgutils_visualizer(scene):
    image, _ = scene
    results = detect_face_quality(image, crop='face', margin=0)
    drawn = visualize_face_quality(image, results)
    assert drawn.size == image.size
    before, after = np.asarray(image), np.asarray(drawn.convert('RGB'))
    for result in results:
        x0, y0, x1, y1 = result.bbox
        assert not np.array_equal(before[y0:y1, x0:x1], after[y0:y1, x0:x1])  # box and label drawn
    from imgutils.detect import detection_visualize
    plain = [result.as_detection() for result in results]
    assert all(len(item) == 3 for item in plain)
    assert plain[0] == (results[0].bbox, results[0].label, results[0].score)
    detection_visualize(image, plain)


def test_tag_faces_runs_taggers_side_by_side(scene):
    image, _ = scene
    tagged = tag_faces(image, taggers=['face_quality'], tagger_options={'face_quality': {'model_name': 'caformer_s36'}})
    scored = detect_face_quality(image, model_name='caformer_s36', crop='head')
    assert [item.bbox for item in tagged] == [item.bbox for item in scored]
    for item, result in zip(tagged, scored):
        assert item.tags['face_quality'] == pytest.approx(result.scores, abs=1e-6)
    with pytest.raises(PluginError, match='Unknown tagger .*face_quality'):
        tag_faces(image, taggers=['no_such_tagger'])


def test_tag_faces_hands_a_crowd_to_each_tagger_in_turns():
    """A frame with 150 faces: each tagger gets at most TAGGED_AT_ONCE crops a call, the same crops for every
    tagger, and one result per face in the detector's order."""
    from imgutils_facequal import hookimpl, register_plugin, unregister_plugin
    from imgutils_facequal.detect import TAGGED_AT_ONCE
    image = Image.new('RGB', (600, 250))
    for index in range(150):  # a 15 x 10 grid of 40 x 25 cells, each its own shade
        image.paste((index, 255 - index, 100), (40 * (index % 15), 25 * (index // 15), 40 * (index % 15) + 40,
                                                 25 * (index // 15) + 25))
    calls = []

    class CrowdPlugin:
        @hookimpl
        def register_detectors(self, register):
            register('grid', lambda image, **options: [
                ((40 * (i % 15), 25 * (i // 15), 40 * (i % 15) + 40, 25 * (i // 15) + 25), 'face', 0.9)
                for i in range(150)])

        @hookimpl
        def register_taggers(self, register):
            def red(crops, **options):
                calls.append(len(crops))
                return [crop.getpixel((5, 5))[0] for crop in crops]
            register('red', red)
            register('green', lambda crops, **options: [crop.getpixel((5, 5))[1] for crop in crops])

    register_plugin(CrowdPlugin(), name='crowd')
    try:
        tagged = tag_faces(image, taggers=['red', 'green'], detector='grid', crop='face', margin=0)
    finally:
        unregister_plugin('crowd')
    assert calls == [TAGGED_AT_ONCE, TAGGED_AT_ONCE, 150 - 2 * TAGGED_AT_ONCE]
    assert [(item.tags['red'], item.tags['green']) for item in tagged] == [(i, 255 - i) for i in range(150)]


def test_unknown_detector_lists_the_registered_ones(scene):
    with pytest.raises(PluginError, match='face, head'):
        detect_face_quality(scene[0], detector='bodies')
