import io
import math
import subprocess
import sys
import threading

import numpy as np
import pytest
from PIL import Image

from tests.conftest import HEAD_CROP_REPO
from tests.support.fake_hub import CLASS_COLOURS, QUALITY_CLASSES, classifier_repo_files, solid_image, write_local_dir
from imgutils_facequal import (
    ImageLoadError,
    ModelNotAvailableError,
    UnknownModelError,
    classify_face_quality,
    classify_face_quality_batch,
    classify_face_quality_score,
    classify_face_quality_score_batch,
    get_face_quality_model_info,
    list_face_quality_models,
    load_face_quality_model,
)
from tests.support.models import count_forward_passes


def noise_image(seed, size=(57, 43)):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8), 'RGB')


@pytest.mark.parametrize('model_name', list_face_quality_models())
@pytest.mark.parametrize('label', QUALITY_CLASSES)
def test_known_models_read_the_image(model_name, label):
    scores = classify_face_quality_score(solid_image(CLASS_COLOURS[label]), model_name=model_name)
    assert list(scores) == QUALITY_CLASSES
    assert math.isclose(sum(scores.values()), 1.0, abs_tol=1e-6)
    assert max(scores, key=scores.get) == label
    top_label, top_score = classify_face_quality(solid_image(CLASS_COLOURS[label]), model_name=model_name)
    assert (top_label, top_score) == (label, scores[label])


def test_class_order_comes_from_the_repo():
    scores = classify_face_quality_score(solid_image(CLASS_COLOURS['poor']), model_name='test-org/reversed-classes')
    assert list(scores) == list(reversed(QUALITY_CLASSES))
    assert max(scores, key=scores.get) == 'poor'


@pytest.mark.parametrize('repo', ['test-org/logits-config-classes', 'test-org/meta-classes-only'])
def test_class_fallbacks_and_logits(repo):
    model = load_face_quality_model(repo)
    assert model.classes == QUALITY_CLASSES
    assert model.classes_from == ('config.json' if 'config' in repo else 'meta.json')
    for label in QUALITY_CLASSES:
        scores = classify_face_quality_score(solid_image(CLASS_COLOURS[label]), model_name=repo)
        assert all(0.0 <= value <= 1.0 for value in scores.values())
        assert math.isclose(sum(scores.values()), 1.0, abs_tol=1e-6)
        assert max(scores, key=scores.get) == label


def test_logits_give_the_same_probabilities_as_softmax_graph():
    image = noise_image(3)
    with_softmax = classify_face_quality_score(image, model_name=HEAD_CROP_REPO)
    from_logits = classify_face_quality_score(image, model_name='test-org/logits-config-classes')
    assert with_softmax == pytest.approx(from_logits, abs=1e-6)


def test_batch_equals_single():
    images = [noise_image(seed) for seed in range(5)] + [solid_image(CLASS_COLOURS[c]) for c in QUALITY_CLASSES]
    batched = classify_face_quality_score_batch(images, batch_size=3)
    assert len(batched) == len(images)
    for image, scores in zip(images, batched):
        single = classify_face_quality_score(image)
        assert list(single) == list(scores)
        assert single == pytest.approx(scores, abs=1e-6)
    assert classify_face_quality_batch(images, batch_size=4) == [
        (max(s, key=s.get), s[max(s, key=s.get)]) for s in batched]


def test_batch_runs_one_forward_pass_per_batch(monkeypatch):
    model = load_face_quality_model()
    passes = count_forward_passes(model, monkeypatch)
    classify_face_quality_score_batch([noise_image(seed) for seed in range(7)], batch_size=3)
    assert len(passes) == 3


def test_preprocessing_matches_the_repo_stages():
    image = noise_image(11, size=(62, 45))  # resized to 55 x 40: an odd offset for the 32 crop
    model = load_face_quality_model()
    assert model.stages[0]['type'] == 'resize'
    tensor = model.preprocess([image])

    # The stages written by the fixture, computed independently: shorter side to 40 with
    # bicubic, centre crop 32 x 32 placed as torchvision places it (offset rounded half to
    # even), scale to [0, 1], normalise with mean 0.5, std 0.5.
    width, height = image.size
    new_size = (int(40 * width / height), 40) if width >= height else (40, int(40 * height / width))
    resized = image.resize(new_size, Image.BICUBIC)
    left, top = int(round((new_size[0] - 32) / 2.0)), int(round((new_size[1] - 32) / 2.0))
    assert (left, top) == (12, 4)
    cropped = resized.crop((left, top, left + 32, top + 32))
    expected = (np.asarray(cropped, dtype=np.float32).transpose(2, 0, 1) / 255.0 - 0.5) / 0.5

    assert tensor.shape == (1, 3, 32, 32)
    assert tensor.dtype == np.float32
    np.testing.assert_allclose(tensor[0], expected, atol=1e-6)


def _mode_image(mode):
    colour = CLASS_COLOURS['good']
    base = solid_image(colour)
    if mode == 'RGBA':
        image = base.convert('RGBA')
        image.putalpha(255)
        return image
    if mode == 'P':
        return base.convert('P')
    if mode == 'CMYK':
        return base.convert('CMYK')
    if mode == 'LA':
        return base.convert('LA')
    if mode == 'L':
        return base.convert('L')
    if mode == 'I;16':
        return Image.fromarray(np.asarray(base.convert('L'), dtype='<u2') * 257)
    raise AssertionError(mode)


@pytest.mark.parametrize('mode', ['RGBA', 'LA', 'P', 'L', 'I;16', 'CMYK'])
def test_every_image_mode(mode):
    image = _mode_image(mode)
    assert image.mode == mode
    scores = classify_face_quality_score(image)
    assert math.isclose(sum(scores.values()), 1.0, abs_tol=1e-6)
    if mode in ('RGBA', 'P', 'CMYK'):
        assert max(scores, key=scores.get) == 'good'


def test_sixteen_bit_grey_is_scaled_not_clipped():
    grey_8bit = solid_image((90, 90, 90)).convert('L')
    grey_16bit = Image.fromarray(np.asarray(grey_8bit, dtype='<u2') * 257)
    assert grey_16bit.mode == 'I;16'
    assert classify_face_quality_score(grey_16bit) == pytest.approx(classify_face_quality_score(grey_8bit), abs=1e-4)


def test_transparent_pixels_go_on_white():
    transparent = Image.new('RGBA', (40, 40), (255, 0, 0, 0))
    assert classify_face_quality(transparent)[0] == 'excellent'  # white reads as excellent


@pytest.mark.parametrize('kind', ['path', 'bytes', 'file', 'pil'])
def test_image_input_types(tmp_path, kind):
    image = solid_image(CLASS_COLOURS['ok'])
    path = tmp_path / 'face.png'
    image.save(path)
    value = {'path': str(path), 'bytes': path.read_bytes(), 'file': io.BytesIO(path.read_bytes()), 'pil': image}[kind]
    assert classify_face_quality(value)[0] == 'ok'


def test_local_directory(tmp_path):
    directory = write_local_dir(str(tmp_path / 'my-model'), classifier_repo_files())
    scores = classify_face_quality_score(solid_image(CLASS_COLOURS['excellent']), model_name=directory)
    assert max(scores, key=scores.get) == 'excellent'
    assert load_face_quality_model(directory).source.is_local


def test_offline_and_not_cached_error():
    with pytest.raises(ModelNotAvailableError) as info:
        classify_face_quality_score(solid_image((0, 0, 0)), model_name='someone/not-in-the-cache')
    message = str(info.value)
    assert "'someone/not-in-the-cache'" in message
    assert 'HF_HUB_OFFLINE' in message
    assert 'local directory' in message


def test_repo_without_onnx_error():
    with pytest.raises(ModelNotAvailableError, match="'model.onnx' of model 'test-org/no-onnx'.*has no such file"):
        classify_face_quality_score(solid_image((0, 0, 0)), model_name='test-org/no-onnx')


def test_local_directory_without_preprocessor(tmp_path):
    files = classifier_repo_files()
    del files['preprocessor_config.json']
    directory = write_local_dir(str(tmp_path / 'broken'), files)
    with pytest.raises(ModelNotAvailableError, match='preprocessor_config.json'):
        load_face_quality_model(directory)


def test_unknown_model_name_lists_known_names():
    with pytest.raises(UnknownModelError) as info:
        classify_face_quality_score(solid_image((0, 0, 0)), model_name='not a model')
    for name in list_face_quality_models():
        assert name in str(info.value)


def test_registry_records_the_framing_shortcut():
    assert list_face_quality_models()[0] == 'caformer_s36.head_crop'
    assert get_face_quality_model_info('caformer_s36').framing_sensitive
    assert not get_face_quality_model_info('caformer_s36.head_crop').framing_sensitive


def test_unreadable_image_error_names_the_input(tmp_path):
    bad = tmp_path / 'not-an-image.png'
    bad.write_bytes(b'this is text')
    with pytest.raises(ImageLoadError, match='not-an-image.png'):
        classify_face_quality(str(bad))
    with pytest.raises(ImageLoadError, match='missing.png'):
        classify_face_quality(str(tmp_path / 'missing.png'))
    with pytest.raises(ImageLoadError, match=r'Input #1: .*not-an-image.png'):
        classify_face_quality_score_batch([solid_image((1, 2, 3)), str(bad)])


def test_truncated_image_error(tmp_path):
    path = tmp_path / 'truncated.png'
    noise_image(5, size=(200, 200)).save(path)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(ImageLoadError, match='truncated.png'):
        classify_face_quality(str(path))


def test_threads_agree_with_serial_calls():
    images = [noise_image(seed) for seed in range(8)]
    expected = [classify_face_quality_score(image) for image in images]
    results = [[None] * 50 for _ in images]
    errors = []

    def worker(index):
        try:
            for call in range(50):
                results[index][call] = classify_face_quality_score(images[index])
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(images))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for index, per_thread in enumerate(results):
        assert all(result == expected[index] for result in per_thread)


def test_import_does_not_import_torch():
    code = (
        'import sys, imgutils_facequal\n'
        'heavy = [m for m in ("torch", "transformers", "timm", "onnxruntime", "imgutils.preprocess") if m in sys.modules]\n'
        'assert not heavy, heavy\n'
    )
    subprocess.run([sys.executable, '-c', code], check=True)


def test_onnx_path_does_not_import_torch(tmp_path):
    directory = write_local_dir(str(tmp_path / 'model'), classifier_repo_files())
    code = (
        'import sys\n'
        'from PIL import Image\n'
        'from imgutils_facequal import classify_face_quality\n'
        f'print(classify_face_quality(Image.new("RGB", (40, 40), (20, 20, 230)), model_name={directory!r}))\n'
        'heavy = [m for m in ("torch", "transformers", "timm") if m in sys.modules]\n'
        'assert not heavy, heavy\n'
        'import imgutils.preprocess\n'  # the real package, reusing the pillow transforms loaded light
        'assert imgutils.preprocess.create_pillow_transforms is sys.modules["imgutils.preprocess.pillow"].create_pillow_transforms\n'
    )
    result = subprocess.run([sys.executable, '-c', code], check=True, capture_output=True, text=True)
    assert "('good'," in result.stdout


def test_default_batch_size_on_cpu(monkeypatch):
    from imgutils_facequal import CPU_BATCH_SIZE
    model = load_face_quality_model()
    assert model.default_batch_size == CPU_BATCH_SIZE == 2
    passes = count_forward_passes(model, monkeypatch)
    classify_face_quality_score_batch([noise_image(seed) for seed in range(5)])
    assert len(passes) == 3  # 2 + 2 + 1
