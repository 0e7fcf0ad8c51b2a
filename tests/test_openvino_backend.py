"""backend='openvino': the same model.onnx through OpenVINO, against the ONNX backend."""
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import HEAD_CROP_REPO
from imgutils_facequal import (MissingModelFileError, classify_face_quality_score_batch,
                               detect_face_quality, export_onnx, load_face_quality_model)
from imgutils_facequal.backends import CPU_BATCH_SIZE, CPU_WORKERS
from imgutils_facequal.backends.openvino import FaceQualityOpenVINOModel
from imgutils_facequal.pipeline import find_images, score_images
from tests.support.models import forget_loaded_models
from tests.test_backends import varied_images
from tests.test_pipeline import frames  # noqa: F401  (the fixture)
from tests.support.models import count_forward_passes
from tests.support.cli import run


def as_rows(scores):
    return np.array([list(s.values()) for s in scores])


def cpu_has_bf16() -> bool:
    import openvino
    return 'BF16' in openvino.Core().get_property('CPU', 'OPTIMIZATION_CAPABILITIES')


@pytest.mark.parametrize('repo, classes_from', [
    (HEAD_CROP_REPO, 'model.onnx metadata'),
    ('test-org/logits-config-classes', 'config.json'),  # returns logits, classes not in the metadata
    ('test-org/meta-classes-only', 'meta.json'),
    ('test-org/reversed-classes', 'model.onnx metadata'),
])
def test_openvino_reads_classes_and_scores_like_onnx(repo, classes_from, monkeypatch):
    model = load_face_quality_model(repo, backend='openvino')
    reference = load_face_quality_model(repo)
    assert isinstance(model, FaceQualityOpenVINOModel) and model.precision == 'fp32'
    assert model.classes == reference.classes and model.classes_from == reference.classes_from == classes_from
    assert load_face_quality_model(repo, backend='openvino') is model
    images = varied_images()
    passes = count_forward_passes(model, monkeypatch)
    scores = classify_face_quality_score_batch(images, model_name=repo, backend='openvino', batch_size=5)
    assert len(passes) == 3  # 5 + 5 + 2 crops, one forward pass each
    expected = classify_face_quality_score_batch(images, model_name=repo, batch_size=5)
    assert [list(s) for s in scores] == [list(s) for s in expected]
    assert np.abs(as_rows(scores) - as_rows(expected)).max() < 1e-5
    assert len({max(s, key=s.get) for s in scores}) > 1  # the images really differ in the model's eyes


def test_openvino_caformer_fp32_and_its_bf16_opt_in(timm_repos):
    repo = timm_repos['caformer']
    images = varied_images()
    reference = as_rows(classify_face_quality_score_batch(images, model_name=repo, batch_size=4))
    fp32 = as_rows(classify_face_quality_score_batch(images, model_name=repo, backend='openvino', batch_size=4))
    assert np.abs(fp32 - reference).max() < 1e-4
    if not cpu_has_bf16():
        with pytest.raises(ValueError, match='AVX512-BF16 or AMX'):
            load_face_quality_model(repo, backend='openvino', precision='bf16')
        return
    # the opt-in: the products of the blocks of stages 0 and 1 in bf16 (test_caformer has three
    # blocks there, each with its token mixer's two 1 x 1 products and its MLP's two), the rest fp32
    model = load_face_quality_model(repo, backend='openvino', precision='bf16')
    assert model.precision == 'bf16' and model.bf16_products == 12
    assert load_face_quality_model(repo, backend='openvino') is not model
    bf16 = as_rows(classify_face_quality_score_batch(images, model_name=repo, backend='openvino', precision='bf16',
                                                     batch_size=4))
    assert np.allclose(bf16.sum(axis=1), 1, atol=1e-5)
    assert 0 < np.abs(bf16 - reference).max() < 0.02  # bf16 really ran, and kept close


def test_openvino_bf16_needs_metaformer_stages():  # said before whether the CPU has bf16
    with pytest.raises(ValueError, match=r"runs the matrix products of the first two stages' blocks in bf16, and "
                                         r"this graph has none .*Use precision='fp32'"):
        load_face_quality_model(HEAD_CROP_REPO, backend='openvino', precision='bf16')


def test_openvino_runs_its_own_checked_rewrite(timm_repos, tmp_path, monkeypatch):
    from imgutils_facequal.graphs import cache as graph_cache, onnx_rewrites
    monkeypatch.setenv('IMGUTILS_FACEQUAL_HOME', str(tmp_path))
    forget_loaded_models()
    repo = timm_repos['caformer']
    model = load_face_quality_model(repo, backend='openvino')
    assert model.graph_rewrites == list(onnx_rewrites.OPENVINO_REWRITES)
    assert model.run_path.startswith(str(tmp_path / 'rewritten')) and model.run_path != model.onnx_path
    with open(os.path.join(os.path.dirname(model.run_path), 'rewrite.json')) as file:
        assert json.load(file)['max_difference'] <= 1e-4
    # onnxruntime's rewrite of the same file is another, in a folder of its own
    onnx_model = load_face_quality_model(repo)
    assert onnx_model.graph_rewrites == list(onnx_rewrites.ONNXRUNTIME_REWRITES)
    assert os.path.dirname(onnx_model.run_path) != os.path.dirname(model.run_path)
    assert len(os.listdir(tmp_path / 'rewritten')) == 2

    images = varied_images()
    rewritten = as_rows(classify_face_quality_score_batch(images, model_name=repo, backend='openvino'))
    assert np.abs(as_rows(classify_face_quality_score_batch(images, model_name=repo)) - rewritten).max() < 1e-5
    forget_loaded_models()
    monkeypatch.setenv(graph_cache.REWRITE_ENV, '0')
    original = load_face_quality_model(repo, backend='openvino')
    assert original.run_path == original.onnx_path and original.graph_rewrites == []
    assert np.abs(as_rows(classify_face_quality_score_batch(images, model_name=repo, backend='openvino'))
                  - rewritten).max() < 1e-5

    # a cached rewrite OpenVINO cannot read gives way to the original, with a warning (a file that is
    # merely damaged no longer matches its recorded digest, and is made again: test_hardening_models)
    monkeypatch.delenv(graph_cache.REWRITE_ENV)
    forget_loaded_models()
    with open(model.run_path, 'wb') as file:
        file.write(b'not an onnx graph')
    record = os.path.join(os.path.dirname(model.run_path), 'rewrite.json')
    with open(record) as file:
        report = json.load(file)
    with open(record, 'w') as file:
        json.dump({**report, 'sha256': hashlib.sha256(b'not an onnx graph').hexdigest()}, file)
    with pytest.warns(RuntimeWarning, match=r'(?s)OpenVINO cannot read .*rewritten folder.*Running the original graph'):
        fallback = load_face_quality_model(repo, backend='openvino')
    assert fallback.run_path == fallback.onnx_path and fallback.graph_rewrites == []
    assert fallback.graph_note == 'the original graph: OpenVINO could not read its rewrite'
    assert np.abs(as_rows(classify_face_quality_score_batch(images, model_name=repo, backend='openvino'))
                  - rewritten).max() < 1e-5


def test_openvino_reads_a_local_export(timm_repos):
    repo = timm_repos['caformer_no_onnx']
    with pytest.raises(MissingModelFileError, match='export_onnx'):
        load_face_quality_model(repo, backend='openvino')
    export_onnx(repo)
    model = load_face_quality_model(repo, backend='openvino')
    assert model.onnx_path.startswith(os.environ['IMGUTILS_FACEQUAL_HOME'])
    images = varied_images()[:3]
    expected = as_rows(classify_face_quality_score_batch(images, model_name=repo))
    assert np.abs(as_rows(classify_face_quality_score_batch(images, model_name=repo, backend='openvino'))
                  - expected).max() < 1e-4


def test_openvino_through_detection_the_pipeline_and_the_cli(frames, tmp_path):  # noqa: F811
    frames, _ = frames  # five frames of two faces each, and a broken file left out here
    model = load_face_quality_model(backend='openvino')
    assert not model.runs_on_gpu and model.default_workers == (CPU_WORKERS if (os.cpu_count() or 1) > 2 else 1)
    assert model.default_batch_size == max(CPU_BATCH_SIZE, model.requests) and model.requests >= 1
    for path in frames:
        faces = detect_face_quality(path, backend='openvino')
        expected = detect_face_quality(path)
        assert [f.bbox for f in faces] == [f.bbox for f in expected] and len(faces) == 2
        for face, single in zip(faces, expected):
            assert face.scores == pytest.approx(single.scores, abs=1e-5)
            runner_up, top = sorted(single.scores.values())[-2:]
            if top - runner_up > 1e-4:  # the colour classifier ties some classes exactly
                assert face.label == single.label
    pooled = list(score_images(find_images(frames), backend='openvino', batch_size=3))
    assert [len(r.faces) for r in pooled] == [2] * len(frames)
    # one crop per OpenVINO request: the same scores however the crops are batched
    assert [f.scores for r in pooled for f in r.faces] == [
        f.scores for path in frames for f in detect_face_quality(path, backend='openvino')]
    out = tmp_path / 'scores.jsonl'
    done = run('score', *frames, '--backend', 'openvino', '-o', out, '--quiet')
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row['label'] for row in rows] == [f.label for r in pooled for f in r.faces]
    # the bf16 opt-in needs a MetaFormer's stages, which the tests' default model has not
    refused = run('score', frames[0], '--backend', 'openvino', '--precision', 'bf16', '--quiet')
    assert refused.returncode != 0 and "first two stages' blocks" in refused.stderr
    assert 'Traceback' not in refused.stderr


def test_openvino_errors_say_what_to_do():
    with pytest.raises(ValueError, match="runs on the CPU; got device='cuda'"):
        load_face_quality_model(backend='openvino', device='cuda')
    # without the package: the same call in a process where `import openvino` fails
    code = ("import sys; sys.modules['openvino'] = None\n"
            "from imgutils_facequal import load_face_quality_model, BackendNotAvailableError\n"
            "try:\n    load_face_quality_model(backend='openvino')\n"
            "except BackendNotAvailableError as err:\n    print(err)\n")
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "pip install 'imgutils-facequal[openvino]'" in done.stdout


def test_scores_resume_across_onnx_and_openvino_in_fp32_only(frames, tmp_path):
    """onnx and openvino run the same model.onnx: a run on one resumes on the other (the fast preset picks
    OpenVINO where it is installed), while another graph or precision is refused."""
    from imgutils_facequal.store import differences, settings_mismatches
    frames, _ = frames  # the readable frames, and a broken file
    out = tmp_path / 'scores.jsonl'
    first = run('score', frames[0], '--backend', 'onnx', '-o', out, '--quiet')
    assert first.returncode == 0, first.stderr
    resumed = run('score', *frames[:2], '--backend', 'openvino', '-o', out)
    assert resumed.returncode == 0, resumed.stderr
    assert '1 image' in resumed.stderr and 'skipped' in resumed.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted({row['image'] for row in rows}) == sorted(str(path) for path in frames[:2])
    refused = run('score', *frames[:3], '--backend', 'openvino', '--margin', '1', '-o', out, '--quiet')
    assert refused.returncode == 2 and 'margin: 0.5' in refused.stderr, refused.stderr
    recorded = {'backend': 'onnx', 'precision': 'fp32'}
    assert differences(recorded, {'backend': 'openvino', 'precision': 'fp32'}) == []
    assert [d.name for d in differences(recorded, {'backend': 'transformers', 'precision': 'fp32'})] == ['backend']
    assert [d.name for d in differences(recorded, {'backend': 'openvino', 'precision': 'bf16'})] == [
        'backend', 'precision']
    assert settings_mismatches(recorded, backend='openvino') == []
    assert [d.name for d in settings_mismatches(recorded, backend='transformers')] == ['backend']


def test_the_summary_points_a_cpu_run_on_onnxruntime_to_openvino():
    from imgutils_facequal.cli.common import Progress

    def advice(backend):
        progress = Progress(1, quiet=True, classifier=load_face_quality_model(backend=backend))
        progress.images, progress.seconds['classification'], progress.seconds['detection'] = 1, 0.3, 0.1
        return progress._time_lines()[-1]
    assert 'OpenVINO may too: --backend auto, which --fast also sets' in advice('onnx')
    assert 'pip install' not in advice('onnx')  # the tests install it
    assert 'OpenVINO' not in advice('openvino') and 'classification takes the most time' in advice('openvino')


def test_openvino_threads_are_not_pinned_to_cores():
    """Pinned, two processes of one thread each (Ray actors of one CPU) ran on the same core."""
    model = load_face_quality_model(backend='openvino')
    assert model.compiled.get_property('ENABLE_CPU_PINNING') is False
