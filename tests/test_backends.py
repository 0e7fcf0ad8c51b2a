"""The transformers backend, ONNX export, and proof that both agree with the ONNX backend."""
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from PIL import Image

from imgutils_facequal import (
    ExportCheckError,
    ModelNotAvailableError,
    classify_face_quality_score,
    classify_face_quality_score_batch,
    detect_face_quality,
    export_onnx,
    exports_dir,
    load_face_quality_model,
)
from imgutils_facequal.backends.onnx import FaceQualityOnnxModel
from imgutils_facequal.backends.openvino import FaceQualityOpenVINOModel
from imgutils_facequal.backends.transformers import FaceQualityTransformersModel
from imgutils_facequal.images import load_rgb_image
from tests.support.models import count_forward_passes


def varied_images():
    """Sizes, aspect ratios, textures and modes, as a dataset would hold them."""
    rng = np.random.default_rng(7)
    images = []
    for width, height in [(64, 64), (200, 120), (45, 300), (640, 480), (17, 23), (1000, 90)]:
        pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        images.append(Image.fromarray(pixels, 'RGB'))
    x = np.linspace(0, 255, 150, dtype=np.float32)
    images.append(Image.fromarray(np.stack([np.tile(x, (90, 1))] * 3, axis=-1).astype(np.uint8), 'RGB'))
    rgba = Image.fromarray(rng.integers(0, 256, size=(80, 120, 4), dtype=np.uint8), 'RGBA')
    images += [rgba, images[1].convert('P'), images[2].convert('L'), images[3].convert('CMYK'),
               images[1].convert('LA')]
    return images


@pytest.fixture(scope='module')
def repos(timm_repos):
    return timm_repos


def test_transformers_matches_onnx_on_the_same_repo(repos):
    images = varied_images()
    onnx_scores = classify_face_quality_score_batch(images, model_name=repos['with_onnx'], batch_size=5)
    torch_scores = classify_face_quality_score_batch(images, model_name=repos['with_onnx'], backend='transformers',
                                                     batch_size=5)
    labels = set()
    for onnx_result, torch_result in zip(onnx_scores, torch_scores):
        assert list(onnx_result) == list(torch_result) == ['poor', 'ok', 'good', 'excellent']
        for name in onnx_result:
            assert abs(onnx_result[name] - torch_result[name]) <= 1e-4
        labels.add(max(torch_result, key=torch_result.get))
    assert len(labels) > 1  # the images really differ in the model's eyes


def test_transformers_backend_reads_the_card_way(repos, monkeypatch):
    model = load_face_quality_model(repos['with_onnx'], backend='transformers', device='cpu')
    assert isinstance(model, FaceQualityTransformersModel)
    assert model.classes == list(model.model.config.classes) == ['poor', 'ok', 'good', 'excellent']
    assert model.device == 'cpu'
    assert load_face_quality_model(repos['with_onnx'], backend='transformers', device='cpu') is model
    passes = count_forward_passes(model, monkeypatch)
    classify_face_quality_score_batch(varied_images()[:6], model_name=repos['with_onnx'], backend='transformers',
                                      device='cpu', batch_size=4)
    assert len(passes) == 2  # batched: 6 images, 4 per forward pass


def test_pillow_and_torchvision_stages_agree(repos):
    from imgutils.preprocess import create_torchvision_transforms
    onnx_model = load_face_quality_model(repos['with_onnx'])
    torchvision_transform = create_torchvision_transforms(onnx_model.stages)
    for image in varied_images():
        decoded = load_rgb_image(image)
        pillow_tensor = onnx_model.preprocess([decoded])[0]
        torchvision_tensor = torchvision_transform(decoded).numpy()
        assert pillow_tensor.shape == torchvision_tensor.shape == (3, 64, 64)
        assert np.abs(pillow_tensor - torchvision_tensor).max() <= 1e-5


def test_auto_backend(repos, monkeypatch):
    # model.onnx on the CPU: OpenVINO, which the tests install (the openvino extra), else onnxruntime
    assert isinstance(load_face_quality_model(repos['with_onnx'], backend='auto'), FaceQualityOpenVINOModel)
    assert isinstance(load_face_quality_model(repos['with_onnx'], backend='auto', device='cpu'),
                      FaceQualityOpenVINOModel)
    monkeypatch.setitem(sys.modules, 'openvino', None)  # as without the extra
    assert isinstance(load_face_quality_model(repos['with_onnx'], backend='auto'), FaceQualityOnnxModel)
    monkeypatch.delitem(sys.modules, 'openvino')
    assert isinstance(load_face_quality_model(repos['no_onnx'], backend='auto'), FaceQualityTransformersModel)
    with pytest.raises(ModelNotAvailableError, match="backend='transformers'.*export_onnx"):
        load_face_quality_model(repos['no_onnx'])
    with pytest.raises(ValueError, match='backend must be one of'):
        load_face_quality_model(repos['no_onnx'], backend='tensorflow')


def test_detect_then_score_on_the_transformers_backend(repos):
    from tests.support.fake_hub import CLASS_COLOURS, draw_scene
    image, _ = draw_scene((256, 256), heads=[(0, 0, CLASS_COLOURS['good']), (2, 2, CLASS_COLOURS['poor'])])
    onnx_results = detect_face_quality(image, model_name=repos['with_onnx'])
    torch_results = detect_face_quality(image, model_name=repos['with_onnx'], backend='transformers')
    assert [r.bbox for r in onnx_results] == [r.bbox for r in torch_results]
    for onnx_result, torch_result in zip(onnx_results, torch_results):
        assert onnx_result.scores == pytest.approx(torch_result.scores, abs=1e-4)


def test_transformers_backend_is_thread_safe(repos):
    images = varied_images()[:4]
    expected = [classify_face_quality_score(image, model_name=repos['with_onnx'], backend='transformers')
                for image in images]
    failures = []

    def worker(index):
        for _ in range(5):
            result = classify_face_quality_score(images[index], model_name=repos['with_onnx'], backend='transformers')
            if result != pytest.approx(expected[index], abs=1e-6):
                failures.append((index, result))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(images))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures


def test_export_reproduces_transformers_and_loads_by_name_offline(repos, tmp_path):
    target = export_onnx(repos['no_onnx'])
    assert target == os.path.join(exports_dir(), repos['no_onnx'].replace('/', '--'))
    assert {'model.onnx', 'preprocessor_config.json', 'config.json', 'meta.json'} <= set(os.listdir(target))
    assert not [name for name in os.listdir(os.path.dirname(target)) if name.startswith('.facequal-export-')]

    import onnx
    graph = onnx.load(os.path.join(target, 'model.onnx'))
    metadata = {entry.key: entry.value for entry in graph.metadata_props}
    assert json.loads(metadata['classes']) == ['poor', 'ok', 'good', 'excellent']
    assert [i.name for i in graph.graph.input] == ['input'] and [o.name for o in graph.graph.output] == ['output']
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch

    images = varied_images()
    by_name = load_face_quality_model(repos['no_onnx'])  # the same name now finds the export
    assert isinstance(by_name, FaceQualityOnnxModel) and by_name.source.local_dir == target
    assert by_name.onnx_path == os.path.join(target, 'model.onnx')
    exported = classify_face_quality_score_batch(images, model_name=repos['no_onnx'], batch_size=3)
    by_path = classify_face_quality_score_batch(images, model_name=target, batch_size=7)
    reference = classify_face_quality_score_batch(images, model_name=repos['no_onnx'], backend='transformers')
    for ours, path_result, theirs in zip(exported, by_path, reference):
        assert ours == pytest.approx(path_result, abs=1e-6)
        for name in theirs:
            assert abs(ours[name] - theirs[name]) <= 1e-4

    with pytest.raises(FileExistsError, match='overwrite=True'):
        export_onnx(repos['no_onnx'])
    other = export_onnx(repos['no_onnx'], output_dir=str(tmp_path / 'elsewhere'), images=images[:3])
    assert os.path.isfile(os.path.join(other, 'model.onnx'))


def test_export_refuses_and_cleans_up_when_the_check_fails(repos, tmp_path):
    target = tmp_path / 'broken'
    with pytest.raises(ExportCheckError, match='does not reproduce torch.*Nothing was written'):
        export_onnx(repos['broken_export'], output_dir=str(target))
    assert not target.exists()
    assert os.listdir(tmp_path) == []
    with pytest.raises(ExportCheckError):
        export_onnx(repos['broken_export'])
    assert not os.path.exists(os.path.join(exports_dir(), repos['broken_export'].replace('/', '--')))


def test_missing_torch_names_the_extra(tmp_path):
    code = (
        'import sys\n'
        'sys.modules["torch"] = None  # as if torch were not installed\n'
        'from imgutils_facequal import BackendNotAvailableError, classify_face_quality, export_onnx\n'
        'from PIL import Image\n'
        'for call in (lambda: classify_face_quality(Image.new("RGB", (8, 8)), backend="transformers"),\n'
        '             lambda: export_onnx("caformer_s36")):\n'
        '    try:\n'
        '        call()\n'
        '    except BackendNotAvailableError as error:\n'
        '        print(error)\n'
    )
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2
    assert all("pip install 'imgutils-facequal[torch]'" in line and 'torch' in line for line in lines)
    assert lines[0].startswith('The transformers backend needs torch') and lines[1].startswith('Exporting to ONNX')


def test_auto_without_torch_says_what_to_install(repos, tmp_path):
    code = (
        'import sys\n'
        'sys.modules["torch"] = None\n'
        'from imgutils_facequal import load_face_quality_model\n'
        f'load_face_quality_model({repos["no_onnx"]!r}, backend="auto")\n'
    )
    env = dict(os.environ, IMGUTILS_FACEQUAL_HOME=str(tmp_path))  # no local export to fall back on
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env)
    assert result.returncode != 0
    assert 'has no such file' in result.stderr and "imgutils-facequal[torch]" in result.stderr
