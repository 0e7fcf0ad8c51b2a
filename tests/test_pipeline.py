"""score_images in process: pooled forward passes, work in the worker threads, same scores."""
import math
import os
import threading
import time

import pytest

from tests.support.fake_hub import CLASS_COLOURS, draw_scene
from imgutils_facequal import detect_face_quality, load_face_quality_detector, load_face_quality_model
from imgutils_facequal import pipeline
from imgutils_facequal.backends import CPU_WORKERS
from imgutils_facequal.pipeline import find_images, score_images, score_images_with
from tests.support.models import count_forward_passes

COLOURS = list(CLASS_COLOURS.values())


@pytest.fixture
def frames(tmp_path):
    paths = []
    for index in range(5):
        heads = [(index % 4, 0, COLOURS[index % 4]), (1, 2, COLOURS[(index + 1) % 4])]
        image, _ = draw_scene((256, 256), heads=heads)
        path = tmp_path / f'{index}.png'
        image.save(path)
        paths.append(str(path))
    (tmp_path / 'broken.png').write_bytes(b'not an image')
    return paths, str(tmp_path / 'broken.png')


@pytest.mark.parametrize('workers', [2, 0])
def test_pooled_batches_give_the_per_image_scores(frames, monkeypatch, workers):
    paths, broken = frames
    model = load_face_quality_model()
    passes = count_forward_passes(model, monkeypatch)
    decoding_threads = []
    original = pipeline.load_rgb_image
    monkeypatch.setattr(pipeline, 'load_rgb_image',
                        lambda *args: decoding_threads.append(threading.current_thread()) or original(*args))
    results = list(score_images(find_images([*paths[:2], broken, *paths[2:]]), batch_size=3, workers=workers))
    if workers == 0:  # decoded in the calling thread
        assert set(decoding_threads) == {threading.current_thread()}
    else:
        assert threading.current_thread() not in decoding_threads
    assert [r.image.path for r in results] == [*paths[:2], broken, *paths[2:]]
    assert 'broken.png' in results[2].error and results[2].faces == []
    faces = sum(len(r.faces) for r in results)
    assert faces == 10
    assert len(passes) == math.ceil(faces / 3)  # crops of several images share a pass
    for result in results[:2] + results[3:]:
        alone = detect_face_quality(result.image.path)
        assert [f.bbox for f in result.faces] == [f.bbox for f in alone]
        for pooled, single in zip(result.faces, alone):
            assert pooled.label == single.label
            assert pooled.scores == pytest.approx(single.scores, abs=1e-6)


@pytest.mark.parametrize('cores, where', [(8, 'facequal-decode'), (2, 'MainThread')])
def test_preprocessing_runs_in_the_workers_where_detection_overlaps(frames, monkeypatch, cores, where):
    # with more than two cores the workers detect (in the detection thread), crop and preprocess while the
    # classifier runs; with two, the workers decode and the rest takes its turn with the classifier
    import imgutils_facequal.pipeline as pipeline
    paths, _ = frames
    model = load_face_quality_model()
    threads = []
    original = model.preprocess

    def recording(images):
        threads.append(threading.current_thread().name)
        return original(images)
    monkeypatch.setattr(model, 'preprocess', recording)
    monkeypatch.setattr(pipeline.os, 'cpu_count', lambda: cores)
    assert pipeline.overlaps_detection(load_face_quality_detector()) == (cores > 2)
    results = list(score_images(find_images(paths), workers=2))
    assert sum(len(r.faces) for r in results) == 10
    assert len(threads) == 10
    assert all(name.startswith(where) for name in threads), threads
    for result in results:  # each stage's busy time, for the command's summary
        assert set(result.seconds) == {'decoding', 'detection', 'classification'}
        assert all(value > 0 for value in result.seconds.values())


def test_torch_preprocessing_on_a_cpu_runs_in_the_main_thread(frames, timm_repos, monkeypatch):
    paths, _ = frames
    model = load_face_quality_model(timm_repos['with_onnx'], backend='transformers', device='cpu')
    threads = []
    original = model.preprocess

    def recording(images):
        threads.append((threading.current_thread() is threading.main_thread(), len(images)))
        return original(images)
    monkeypatch.setattr(model, 'preprocess', recording)
    results = list(score_images(find_images(paths), model_name=timm_repos['with_onnx'], backend='transformers',
                                device='cpu', batch_size=3, workers=2))
    assert threads == [(True, 3)] * 3 + [(True, 1)]  # one call per forward pass, 10 crops in passes of 3
    for result in results[:2]:
        alone = detect_face_quality(result.image.path, model_name=timm_repos['with_onnx'], backend='transformers')
        for pooled, single in zip(result.faces, alone):
            assert pooled.scores == pytest.approx(single.scores, abs=1e-5)


def test_default_workers_on_cpu(monkeypatch):
    model = load_face_quality_model()
    assert not model.runs_on_gpu
    monkeypatch.setattr(os, 'cpu_count', lambda: 8)
    assert model.default_workers == CPU_WORKERS == 2
    monkeypatch.setattr(os, 'cpu_count', lambda: 2)
    assert model.default_workers == 1  # they only decode there
    with pytest.raises(ValueError, match='workers'):
        next(score_images([], workers=-1))


def _detections(frames, monkeypatch, **options):
    """The most detections running at once, and the threads they ran in."""
    from imgutils_facequal.scoring import FaceLocator
    paths, _ = frames
    running, most, threads = [0], [0], set()
    lock = threading.Lock()
    original = FaceLocator.locate

    def counting(*args, **kwargs):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
            threads.add(threading.current_thread())
        try:
            time.sleep(0.05)  # long enough for the other workers to try
            return original(*args, **kwargs)
        finally:
            with lock:
                running[0] -= 1
    monkeypatch.setattr(FaceLocator, 'locate', counting)
    assert sum(len(r.faces) for r in score_images(find_images(paths), workers=4, **options)) == 10
    return most[0], threads


def test_detection_in_one_thread_kept_across_calls(frames, monkeypatch):
    most, threads = _detections(frames, monkeypatch)
    assert most == 1 and len(threads) == 1
    thread, = threads
    assert thread.name.startswith('facequal-detect')
    # the same thread next time, so imgutils' per-thread detector sessions are reused
    assert _detections(frames, monkeypatch)[1] == {thread}



def test_on_a_gpu_the_pipeline_detects_images_together_with_the_same_results(frames, monkeypatch):
    from imgutils_facequal import FaceLocator
    from imgutils_facequal.backends.base import FaceQualityClassifier
    paths, _ = frames
    faces = load_face_quality_detector()
    alone = [detect_face_quality(path) for path in paths]
    sizes = []
    original = FaceLocator.locate_batch

    def recording(self, images):
        sizes.append(len(images))
        if len(sizes) == 1:  # a first call as slow as a GPU's warm-up, so the workers' next images wait together
            time.sleep(0.5)  # (without it, whether two images meet depends on the scheduler: flaky on 2 cores)
        return original(self, images)
    monkeypatch.setattr(FaceLocator, 'locate_batch', recording)
    monkeypatch.setattr(type(faces.classifier), 'runs_on_gpu', property(lambda self: True))
    assert isinstance(faces.classifier, FaceQualityClassifier) and faces.classifier.runs_on_gpu
    results = list(score_images_with(faces, find_images(paths), workers=4, batch_size=4))
    assert [result.faces for result in results] == [
        [face._replace(scores=pytest.approx(face.scores, abs=1e-6), score=pytest.approx(face.score, abs=1e-6),
                       quality=pytest.approx(face.quality, abs=1e-6)) for face in faces_alone]
        for faces_alone in alone]
    assert sum(sizes) == len(paths) and max(sizes) > 1, sizes
