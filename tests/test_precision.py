"""precision='bf16': the transformers backend's blocks under bfloat16 autocast, the rest fp32."""
import numpy as np
import pytest
import torch

from tests.support.fake_hub import CLASS_COLOURS, draw_scene, write_repo
from imgutils_facequal import classify_face_quality_score_batch, detect_face_quality, load_face_quality_model
from imgutils_facequal.backends.transformers import _bf16_blocks as bf16_blocks
from tests.support.cli import run
from tests.test_backends import varied_images


@pytest.fixture
def frame_path(tmp_path):
    image, _ = draw_scene((256, 256), heads=[(0, 0, CLASS_COLOURS['good']), (2, 2, CLASS_COLOURS['poor'])])
    path = tmp_path / 'frame.png'
    image.save(path)
    return str(path)


def output_dtypes(model, images):
    """The dtype each Linear and Conv2d produced in one forward pass, by module name."""
    dtypes = {}
    hooks = [module.register_forward_hook(lambda _, __, output, name=name: dtypes.__setitem__(name, output.dtype))
             for name, module in model.model.named_modules() if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d))]
    try:
        model.scores(images)
    finally:
        for hook in hooks:
            hook.remove()
    return dtypes


def test_bf16_runs_the_blocks_in_bf16_and_the_rest_in_fp32(timm_repos):
    repo = timm_repos['caformer']
    fp32 = load_face_quality_model(repo, backend='transformers', device='cpu')
    bf16 = load_face_quality_model(repo, backend='transformers', device='cpu', precision='bf16')
    assert bf16 is not fp32 and bf16.precision == 'bf16' and fp32.precision == 'fp32'
    blocks = bf16_blocks(bf16.model)
    assert blocks and all('.blocks.' in name for name in blocks)
    images = varied_images()[:4]
    dtypes = output_dtypes(bf16, images)
    in_blocks = {name: dtype for name, dtype in dtypes.items() if any(name.startswith(b + '.') for b in blocks)}
    outside = {name: dtype for name, dtype in dtypes.items() if name not in in_blocks}
    assert in_blocks and set(in_blocks.values()) == {torch.bfloat16}
    assert outside and set(outside.values()) == {torch.float32}  # stem, downsampling, head
    assert set(output_dtypes(fp32, images).values()) == {torch.float32}
    weights = {name: module.weight.dtype for name, module in bf16.model.named_modules()
               if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d))}
    assert {weights[name] for name in in_blocks} == {torch.bfloat16}  # cast once, not on every call
    assert {weights[name] for name in outside} == {torch.float32}

    reference = np.array([list(s.values()) for s in classify_face_quality_score_batch(
        images, model_name=repo, backend='transformers', device='cpu')])
    scores = classify_face_quality_score_batch(images, model_name=repo, backend='transformers', device='cpu',
                                               precision='bf16')
    result = np.array([list(s.values()) for s in scores])
    assert list(scores[0]) == fp32.classes
    assert np.allclose(result.sum(axis=1), 1, atol=1e-5)
    assert 0 < np.abs(result - reference).max() < 0.05  # bf16 really ran, and stayed close


def test_bf16_through_detection_and_auto(timm_repos, frame_path):
    repo = timm_repos['caformer']
    faces = detect_face_quality(frame_path, model_name=repo, backend='transformers', precision='bf16')
    reference = detect_face_quality(frame_path, model_name=repo, backend='transformers')
    assert [face.bbox for face in faces] == [face.bbox for face in reference] and faces
    for face, expected in zip(faces, reference):
        assert face.scores == pytest.approx(expected.scores, abs=0.05)
    # backend='auto' picks the transformers backend for bf16 even where the repository has an ONNX graph
    assert load_face_quality_model(repo, backend='auto', precision='bf16').precision == 'bf16'


def test_bf16_errors_say_what_to_do(timm_repos, hub_cache_dir):
    from tests.support.timm_repos import timm_repo_files
    with pytest.raises(ValueError, match="backend='transformers'"):
        load_face_quality_model(timm_repos['caformer'], precision='bf16')
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16; got 'fp16'"):
        load_face_quality_model(timm_repos['caformer'], backend='transformers', precision='fp16')
    write_repo(hub_cache_dir, 'test-org/timm-resnet-no-blocks', timm_repo_files('test_resnet', with_onnx=False))
    with pytest.raises(ValueError, match="has none. Use precision='fp32'"):
        load_face_quality_model('test-org/timm-resnet-no-blocks', backend='transformers', precision='bf16')


def test_cli_precision_option(timm_repos, frame_path, tmp_path):
    out = tmp_path / 'scores.jsonl'
    done = run('score', frame_path, '--model', timm_repos['caformer'], '--backend', 'transformers', '--precision',
               'bf16', '-o', out, '--quiet')
    assert done.returncode == 0, done.stderr
    assert out.read_text().count('"label"') >= 1
    refused = run('score', frame_path, '--model', timm_repos['caformer'], '--precision', 'bf16', '--quiet')
    assert refused.returncode != 0 and "backend='transformers'" in refused.stderr
