"""Detectors: our own sessions of imgutils' detector files, the head-localisation options.

The tiny grid detectors have a fixed 64 x 64 input; the ``n``-level detectors written here
are YOLOv8n graphs (the real architecture, random weights, dynamic input size) whose
detections come from the image's colours, so the same scenes serve both.
"""
import pickle

import pytest

from imgutils_facequal import FaceLocator, load_face_quality_detector
from imgutils_facequal._imgutils import detect_module
from imgutils_facequal.geometry import crop_box, face_to_head_box
from imgutils_facequal.plugins.builtin import imgutils_detectors
from imgutils_facequal.plugins.builtin.yolo_sessions import yolo_session
from imgutils_facequal.scoring import _face_box_from_head
from tests.support.fake_hub import CLASS_COLOURS, FACE_DETECTOR_REPO, HEAD_DETECTOR_REPO, draw_scene, write_repo

HEADS = [(0, 0, CLASS_COLOURS['good']), (2, 1, CLASS_COLOURS['poor']), (3, 3, CLASS_COLOURS['excellent'])]


#: The version the YOLOv8n graphs are served under, so that no other test's model names change.
YOLO = 'yolo'


@pytest.fixture(scope='module')
def yolo_n_detectors(hub_cache_dir):
    """``face_detect_yolo_n`` and ``head_detect_yolo_n``: YOLOv8n graphs beside the tiny ones."""
    from tests.support.yolo_graphs import yolo_face_detector_files, yolo_head_detector_files
    write_repo(hub_cache_dir, FACE_DETECTOR_REPO, yolo_face_detector_files(levels=('n',), version=YOLO))
    write_repo(hub_cache_dir, HEAD_DETECTOR_REPO, yolo_head_detector_files(levels=('n',), version=YOLO))


@pytest.fixture
def scene():
    return draw_scene((384, 256), heads=HEADS, bare_faces=[(5, 0, CLASS_COLOURS['ok'])])


def test_own_session_is_imgutils_on_the_tiny_detectors(scene):
    image, _ = scene
    imgutils = detect_module()
    for threshold in (0.25, 0.6):
        faces = imgutils.detect_faces(image, model_name='face_detect_v1.4_s', conf_threshold=threshold)
        ours = yolo_session(FACE_DETECTOR_REPO, 'face_detect_v1.4_s').predict(image, conf_threshold=threshold)
        assert ours == faces and len(faces) == 4
    heads = imgutils.detect_heads(image, model_name='head_detect_v2.0_s', conf_threshold=0.4)
    assert yolo_session(HEAD_DETECTOR_REPO, 'head_detect_v2.0_s').predict(image, conf_threshold=0.4) == heads


def test_own_session_is_imgutils_on_a_yolov8_graph(yolo_n_detectors, scene):
    image, expected = scene
    imgutils_heads = detect_module().detect_heads(image, model_name='head_detect_yolo_n', conf_threshold=0.4)
    ours = imgutils_detectors.detect_heads(image, level='n', version=YOLO, infer_size=640)  # the graph's own size, our session
    assert ours == imgutils_heads
    assert sorted(bbox for bbox, _, _ in ours) == sorted(head for _, head, _ in expected if head is not None)
    faces = imgutils_detectors.detect_faces(image, level='n', version=YOLO, infer_size=640)
    assert faces == detect_module().detect_faces(image, model_name='face_detect_yolo_n')
    assert sorted(bbox for bbox, _, _ in faces) == sorted(face for face, _, _ in expected)


def test_a_smaller_inference_size_finds_the_same_heads(yolo_n_detectors, scene):
    image, _ = scene
    full = imgutils_detectors.detect_heads(image, level='n', version=YOLO)
    small = imgutils_detectors.detect_heads(image, level='n', version=YOLO, infer_size=320)
    assert [bbox for bbox, _, _ in small] == [bbox for bbox, _, _ in full]
    assert [score for _, _, score in small] != [score for _, _, score in full]  # a different look at the image


def test_a_fixed_size_graph_refuses_another_inference_size(scene):
    image, _ = scene
    with pytest.raises(ValueError, match='fixed input size'):
        imgutils_detectors.detect_heads(image, infer_size=320)
    with pytest.raises(ValueError, match='multiple of 32'):
        yolo_session(HEAD_DETECTOR_REPO, 'head_detect_v2.0_s').predict(image, infer_size=100)


def test_face_box_from_head_inverts_face_to_head():
    for face in [(100, 100, 140, 150), (0, 10, 64, 74), (33, 7, 97, 91)]:
        assert _face_box_from_head(face_to_head_box(face)) == face


def test_heads_localisation_runs_the_head_detector_alone(scene, monkeypatch):
    image, expected = scene
    detectors = {'face': [], 'head': []}
    imgutils = detect_module()
    for name, calls in detectors.items():
        original = getattr(imgutils, f'detect_{name}s')

        def counted(image, _original=original, _calls=calls, **options):  # the real detector still runs
            _calls.append(options)
            return _original(image, **options)

        monkeypatch.setattr(imgutils, f'detect_{name}s', counted)
    heads = FaceLocator(head_localisation='heads').locate(image)
    assert len(detectors['face']) == 0 and len(detectors['head']) == 1
    paired = FaceLocator(head_localisation='paired').locate(image)
    assert len(detectors['face']) == 1 and len(detectors['head']) == 2
    estimated = FaceLocator().locate(image)  # the default: one face detector pass, heads from faces
    assert len(detectors['face']) == 2 and len(detectors['head']) == 2
    assert [location.bbox for location in estimated] == [location.bbox for location in paired]
    assert [location.head_bbox for location in estimated] == [face_to_head_box(location.bbox)
                                                              for location in estimated]
    detected_heads = sorted(head for _, head, _ in expected if head is not None)
    assert sorted(location.head_bbox for location in heads) == [tuple(map(float, head)) for head in detected_heads]
    for location in heads:
        assert location.bbox == _face_box_from_head(location.head_bbox)
        assert location.detection_label == 'face'
        assert location.crop_bbox == crop_box(location.head_bbox, 0.5, image.size)
    # the faces that have a head: the same head boxes and crops as the paired path
    paired_heads = {location.head_bbox: location.crop_bbox for location in paired}
    assert all(paired_heads[location.head_bbox] == location.crop_bbox for location in heads)
    assert len(paired) == len(heads) + 1  # the bare face has no head to be found through


def test_heads_localisation_with_face_crops_crops_the_derived_face(scene):
    image, _ = scene
    for location in FaceLocator(crop='face', head_localisation='heads').locate(image):
        assert location.head_bbox is None
        assert location.crop_bbox == crop_box(location.bbox, 0.5, image.size)


def test_head_detector_options_reach_the_head_detector(yolo_n_detectors, scene):
    image, _ = scene
    paired = FaceLocator(head_localisation='paired').locate(image)
    for options in ({'head_level': 'n', 'head_version': YOLO},
                    {'head_level': 'n', 'head_version': YOLO, 'head_infer_size': 320}):
        cheaper = FaceLocator(head_localisation='paired', **options).locate(image)
        assert [(location.bbox, location.head_bbox, location.crop_bbox) for location in cheaper] == \
            [(location.bbox, location.head_bbox, location.crop_bbox) for location in paired]
        heads_only = FaceLocator(head_localisation='heads', **options).locate(image)
        assert len(heads_only) == 3
    with pytest.raises(ValueError, match='fixed input size'):
        FaceLocator(head_localisation='paired', head_infer_size=320).locate(image)


def test_head_localisation_options_round_trip(yolo_n_detectors, scene):
    image, _ = scene
    faces = load_face_quality_detector(head_localisation='heads', head_level='n', head_version=YOLO,
                                       head_infer_size=320)
    assert faces.locator.head_detector_options == {'level': 'n', 'version': YOLO, 'infer_size': 320}
    assert load_face_quality_detector(settings=faces.settings).settings == faces.settings
    again = pickle.loads(pickle.dumps(faces))
    assert again.settings == faces.settings
    results = faces.detect(image)
    assert [result.head_bbox for result in results] == [result.head_bbox for result in again.detect(image)]
    assert len(results) == 3 and "head_localisation='heads'" in repr(faces)
    assert load_face_quality_detector().settings.head_localisation == 'estimated'


def test_head_localisation_errors():
    with pytest.raises(ValueError, match='head_localisation must be one of estimated, paired, heads'):
        FaceLocator(head_localisation='fast')
    with pytest.raises(ValueError, match='needs a head_detector'):
        FaceLocator(head_localisation='heads', head_detector=None)
