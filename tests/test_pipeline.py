"""score_images in process: pooled forward passes, work in the worker threads, same scores."""
import math
import threading
import time

import pytest

from tests.support.fake_hub import CLASS_COLOURS, draw_scene
from imgutils_facequal import detect_face_quality, load_face_quality_model
from imgutils_facequal.backends import CPU_WORKERS
from imgutils_facequal.pipeline import find_images, score_images
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


def test_pooled_batches_give_the_per_image_scores(frames, monkeypatch):
    paths, broken = frames
    model = load_face_quality_model()
    passes = count_forward_passes(model, monkeypatch)
    results = list(score_images(find_images([*paths[:2], broken, *paths[2:]]), batch_size=3, workers=2))
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


def test_preprocessing_runs_in_the_worker_threads(frames, monkeypatch):
    paths, _ = frames
    model = load_face_quality_model()
    threads = []
    original = model.preprocess

    def recording(images):
        threads.append(threading.current_thread().name)
        return original(images)
    monkeypatch.setattr(model, 'preprocess', recording)
    assert sum(len(r.faces) for r in score_images(find_images(paths), workers=2)) == 10
    assert len(threads) == 10
    assert all(name.startswith('facequal-decode') for name in threads), threads


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


def test_default_workers_on_cpu():
    model = load_face_quality_model()
    assert not model.runs_on_gpu
    assert model.default_workers == CPU_WORKERS == 2
    with pytest.raises(ValueError, match='workers'):
        next(score_images([], workers=0))


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

