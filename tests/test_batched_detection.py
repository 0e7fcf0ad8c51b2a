"""Detection batched across images: several images per run of a detector graph, each image's
detections those of one-at-a-time calls.

The batched runs are checked against single-image runs on YOLOv8n graphs (the real
architecture, random weights, dynamic batch and input size, detections fed from the image's
colours), at the graph's own size and at 320, on images of different sizes with and without
faces; and through the plugin registry and `FaceLocator.locate_batch`.
"""
import pytest
from PIL import Image

from imgutils_facequal import FaceLocator, hookimpl, register_plugin, unregister_plugin
from imgutils_facequal._imgutils import detect_module
from imgutils_facequal.errors import DetectionError
from imgutils_facequal.plugins import get_detector
from imgutils_facequal.plugins.builtin.yolo_sessions import yolo_session
from imgutils_facequal.settings import CROP_MODES, HEAD_LOCALISATIONS
from tests.support.fake_hub import CLASS_COLOURS, FACE_DETECTOR_REPO, HEAD_DETECTOR_REPO, draw_scene, write_repo

#: The version the YOLOv8n graphs are served under here, so that no other test's model names change.
VERSION = 'batched'
YOLO = {'level': 'n', 'version': VERSION}


@pytest.fixture(scope='module')
def yolo_graphs(hub_cache_dir):
    """``face_detect_batched_n`` and ``head_detect_batched_n``: YOLOv8n graphs beside the tiny ones."""
    from tests.support.yolo_graphs import yolo_face_detector_files, yolo_head_detector_files
    write_repo(hub_cache_dir, FACE_DETECTOR_REPO, yolo_face_detector_files(levels=('n',), version=VERSION))
    write_repo(hub_cache_dir, HEAD_DETECTOR_REPO, yolo_head_detector_files(levels=('n',), version=VERSION))


@pytest.fixture(scope='module')
def images():
    """Frames of different sizes and shapes, the last with no face at all."""
    colours = list(CLASS_COLOURS.values())
    scenes = [
        draw_scene((384, 256), heads=[(0, 0, colours[0]), (2, 1, colours[1])], bare_faces=[(5, 0, colours[2])]),
        draw_scene((640, 384), heads=[(3, 3, colours[3])]),
        draw_scene((250, 330), heads=[(1, 2, colours[2]), (3, 0, colours[0])]),
    ]
    return [image for image, _ in scenes] + [Image.new('RGB', (300, 200))]


class CountingSession:
    """An onnxruntime session that records the batch size of every run."""

    def __init__(self, session):
        self.session, self.batches = session, []

    def run(self, names, feeds):
        self.batches.append(len(feeds['images']))
        return self.session.run(names, feeds)


@pytest.mark.parametrize('infer_size', [None, 320])
def test_predict_batch_is_predict_on_each_image(yolo_graphs, images, monkeypatch, infer_size):
    session = yolo_session(FACE_DETECTOR_REPO, f'face_detect_{VERSION}_n')
    assert session.dynamic_batch
    one_by_one = [session.predict(image, infer_size) for image in images]
    assert all(one_by_one[:3]) and one_by_one[3] == []  # faces in the scenes, none in the empty frame
    if infer_size is None:  # at the graph's own size: imgutils' own detections
        imgutils = detect_module()
        assert one_by_one == [imgutils.detect_faces(image, model_name=f'face_detect_{VERSION}_n') for image in images]
    counting = CountingSession(session.session)
    monkeypatch.setattr(session, 'session', counting)
    assert session.predict_batch(images, infer_size, max_batch=3) == one_by_one
    assert counting.batches == [3, 1]
    assert session.predict_batch([], infer_size) == []


def test_a_fixed_batch_graph_runs_image_by_image(images, monkeypatch):
    session = yolo_session(FACE_DETECTOR_REPO, 'face_detect_v1.4_s')  # the tiny grid detector: batch of 1
    assert not session.dynamic_batch
    one_by_one = [session.predict(image) for image in images]
    counting = CountingSession(session.session)
    monkeypatch.setattr(session, 'session', counting)
    assert session.predict_batch(images) == one_by_one and counting.batches == [1] * len(images)
    with pytest.raises(ValueError, match='max_batch'):
        session.predict_batch(images, max_batch=0)


def test_builtin_detectors_batch_as_they_detect(yolo_graphs, images):
    options = {**YOLO, 'infer_size': 320, 'conf_threshold': 0.3}
    for name in ('face', 'head'):
        detector = get_detector(name)
        assert detector.batch(images, **options) == [detector(image, **options) for image in images]
    tiny = get_detector('face')  # imgutils' own detect_faces image by image; our session batched
    assert tiny.batch(images) == [tiny(image) for image in images]


def whole_image(image, **options):
    width, height = image.size
    return [((0, 0, width, height), 'whole', 0.99)]


class SingleImagePlugin:
    @hookimpl
    def register_detectors(self, register):
        register('whole_image', whole_image, 'the whole image as one face')
        register('one_short', whole_image, 'a detect_batch that loses an image',
                 detect_batch=lambda images, **options: [whole_image(image) for image in images[1:]])
        register('inverted', whole_image, 'a detect_batch that returns an inverted box',
                 detect_batch=lambda images, **options: [[((10, 10, 5, 5), 'face', 0.5)] for _ in images])


@pytest.fixture
def single_image_plugin():
    register_plugin(SingleImagePlugin(), name='single-image-plugin')
    yield
    unregister_plugin('single-image-plugin')


def test_a_detector_without_detect_batch_batches_image_by_image(single_image_plugin, images):
    detector = get_detector('whole_image')
    assert detector.batch_function is None
    assert detector.batch(images) == [[((0, 0, *image.size), 'whole', 0.99)] for image in images]
    locator = FaceLocator(detector='whole_image', crop='face', margin=0)
    assert locator.locate_batch(images) == [locator.locate(image) for image in images]


def test_what_detect_batch_returns_is_checked(single_image_plugin, images):
    with pytest.raises(DetectionError, match=r"'one_short'.*3 results from detect_batch for 4 images"):
        get_detector('one_short').batch(images)
    with pytest.raises(DetectionError, match="'inverted'.*an empty or inverted box"):
        get_detector('inverted').batch(images)
    assert get_detector('inverted').batch([]) == []


@pytest.mark.parametrize('localisation', HEAD_LOCALISATIONS)
def test_locate_batch_is_locate_on_each_image(yolo_graphs, images, localisation):
    yolo = FaceLocator(head_localisation=localisation, detector_level='n', detector_version=VERSION, head_level='n',
                       head_version=VERSION, head_infer_size=320)
    expected = [yolo.locate(image) for image in images]
    assert any(expected) and yolo.locate_batch(images) == expected
    for crop in CROP_MODES:  # the tiny detectors: imgutils' own one by one, our session batched
        for options in ({}, {'detector': 'head'}, {'head_detector': None}):
            if localisation == 'heads' and options:
                continue  # the head detector alone: no face detector to choose, and it needs the head detector
            tiny = FaceLocator(head_localisation=localisation, crop=crop, **options)
            assert tiny.locate_batch(images) == [tiny.locate(image) for image in images]
    assert yolo.locate_batch([]) == []


class TaggerWithBatchPlugin:
    @hookimpl
    def register_taggers(self, register):
        register('brightness', lambda crops, **options: [0.5] * len(crops), detect_batch=lambda images: [])


def test_only_a_detector_takes_detect_batch():
    from imgutils_facequal.plugins import PluginError, get_tagger
    register_plugin(TaggerWithBatchPlugin(), name='tagger-with-batch')
    try:
        with pytest.raises(PluginError, match="tagger 'brightness' a detect_batch; only detectors take one"):
            get_tagger('face_quality')
    finally:
        unregister_plugin('tagger-with-batch')
    with pytest.raises(TypeError, match='no batch form'):
        get_tagger('face_quality').batch([])
