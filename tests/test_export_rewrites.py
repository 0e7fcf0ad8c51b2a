"""The exact MetaFormer rewrites the ONNX export traces: same outputs, fewer layout passes."""
import collections
import json
import os
import warnings

import pytest
import torch
from timm.models.metaformer import Attention, LayerNorm2dNoBias, LayerNormNoBias, MetaFormer, SepConv

from imgutils_facequal import classify_face_quality_score_batch, export_onnx
from imgutils_facequal.graphs.torch_rewrites import rewrite_for_export
from tests.test_backends import varied_images
from tests.support.timm_repos import perturb_metaformer_scales


def tiny_metaformer(token_mixers, **kwargs):
    torch.manual_seed(0)
    norm_layers = [LayerNorm2dNoBias if mixer is SepConv else LayerNormNoBias for mixer in token_mixers]
    model = MetaFormer(num_classes=4, depths=(1, 2, 1, 1), dims=(16, 32, 64, 96), token_mixers=token_mixers,
                       norm_layers=norm_layers, **kwargs).eval()
    perturb_metaformer_scales(model)
    return model


CAFORMER = [SepConv, SepConv, Attention, Attention]
CONVFORMER = [SepConv] * 4


def onnx_op_counts(module, path, size=64):
    import onnx
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.onnx.export(module, (torch.rand(1, 3, size, size),), path, input_names=['input'],
                          output_names=['output'], opset_version=17, dynamo=False,
                          dynamic_axes={'input': {0: 'batch'}}, custom_opsets={'com.microsoft': 1})
    return collections.Counter(node.op_type for node in onnx.load(path).graph.node)


ALL_REWRITES = ['channels_last_stages', 'folded_star_relu', 'fused_attention']


@pytest.mark.parametrize('mixers, options, expected', [
    (CAFORMER, {}, ALL_REWRITES),
    (CONVFORMER, {}, ALL_REWRITES[:2]),
    (CAFORMER, {'drop_path_rate': 0.2, 'drop_rate': 0.1, 'proj_drop_rate': 0.1}, ALL_REWRITES),  # trained so
], ids=['caformer', 'convformer', 'caformer-with-dropout'])
def test_rewrite_computes_the_same_function_and_leaves_the_model_alone(mixers, options, expected):
    model = tiny_metaformer(mixers, **options)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    types_before = [type(module) for module in model.modules()]

    rewritten, rewrites = rewrite_for_export(model)

    assert rewrites == expected
    assert rewritten is not model
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        expected, actual = model(x), rewritten(x)
    assert float(expected.abs().max()) > 0.1
    assert torch.allclose(actual, expected, atol=1e-5, rtol=1e-5)
    assert [type(module) for module in model.modules()] == types_before
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())


def test_rewritten_graph_runs_pointwise_layers_as_matmuls_and_fuses_attention(tmp_path):
    model = tiny_metaformer(CAFORMER)
    literal = onnx_op_counts(model, str(tmp_path / 'literal.onnx'))
    rewritten = onnx_op_counts(rewrite_for_export(model)[0], str(tmp_path / 'rewritten.onnx'))
    conv_blocks, attention_blocks = 1 + 2, 1 + 1  # blocks in the SepConv stages and in the attention stages
    # literal: the stem, a downsampling in each later stage, and 5 convolutions per SepConv block
    assert literal['Conv'] == 1 + 3 + 5 * conv_blocks
    # rewritten: only the depthwise 7 x 7 convolutions stay convolutions
    assert rewritten['Conv'] == 1 + 3 + conv_blocks
    # 4 pointwise layers per SepConv block become MatMuls; each attention loses its 2 products
    assert rewritten['MatMul'] == literal['MatMul'] + 4 * conv_blocks - 2 * attention_blocks
    assert literal['Softmax'] == attention_blocks and rewritten['Softmax'] == 0
    assert rewritten['MultiHeadAttention'] == attention_blocks
    assert literal['Pow'] > 0 and rewritten['Pow'] == 0
    assert rewritten['Transpose'] < literal['Transpose']


def test_rewritten_graph_gives_the_same_output_in_onnxruntime(tmp_path):
    import numpy as np
    import onnxruntime
    model = tiny_metaformer(CAFORMER)
    onnx_op_counts(rewrite_for_export(model)[0], str(tmp_path / 'rewritten.onnx'))
    x = torch.randn(2, 3, 64, 64)
    session = onnxruntime.InferenceSession(str(tmp_path / 'rewritten.onnx'), providers=['CPUExecutionProvider'])
    with torch.no_grad():
        expected = model(x).numpy()
    assert np.allclose(session.run(None, {'input': x.numpy()})[0], expected, atol=1e-5)


def test_models_without_metaformer_layers_come_back_unchanged():
    import timm
    model = timm.create_model('test_convnext', num_classes=4).eval()
    assert rewrite_for_export(model) == (model, [])
    gelu = tiny_metaformer(CONVFORMER, mlp_act=torch.nn.GELU)  # no StarReLU: nothing here is ours to rewrite
    assert rewrite_for_export(gelu) == (gelu, [])


def test_only_the_layers_that_match_are_rewritten():
    model = tiny_metaformer(CAFORMER, mlp_act=torch.nn.GELU)  # attention, but no StarReLU MLPs
    rewritten, rewrites = rewrite_for_export(model)
    assert rewrites == ['fused_attention']
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(rewritten(x), model(x), atol=1e-5, rtol=1e-5)


def test_export_records_its_rewrites_and_matches_torch(timm_repos, tmp_path):
    import onnx
    images = varied_images()
    repo = timm_repos['caformer_no_onnx']
    reference = classify_face_quality_score_batch(images, model_name=repo, backend='transformers')
    for rewrite, expected in ((True, ALL_REWRITES), (False, [])):
        target = export_onnx(repo, output_dir=str(tmp_path / str(rewrite)), rewrite=rewrite)
        metadata = {entry.key: entry.value for entry in onnx.load(os.path.join(target, 'model.onnx')).metadata_props}
        assert json.loads(metadata['rewrites']) == expected
        exported = classify_face_quality_score_batch(images, model_name=target)
        for ours, theirs in zip(exported, reference):
            assert list(ours) == list(theirs)
            assert max(abs(ours[name] - theirs[name]) for name in theirs) <= 1e-4
