"""The published graph's rewrites for onnxruntime: exact up to rounding, checked, cached, optional."""
import collections
import copy
import json
import os
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from huggingface_hub import hf_hub_download
from PIL import Image

from imgutils_facequal import load_face_quality_model
from imgutils_facequal.graphs import cache as graph_cache, onnx_rewrites
from tests.support.models import forget_loaded_models
from imgutils_facequal.models import resolve_model

pytestmark = pytest.mark.usefixtures('timm_repos')


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An empty facequal home and no model loaded yet."""
    monkeypatch.setenv('IMGUTILS_FACEQUAL_HOME', str(tmp_path))
    forget_loaded_models()
    return tmp_path


def _published_caformer(timm_repos) -> str:
    return hf_hub_download(timm_repos['caformer'], 'model.onnx')


def _ops(model) -> collections.Counter:
    return collections.Counter(node.op_type for node in model.graph.node)


def _run(model_or_path, batch):
    source = model_or_path if isinstance(model_or_path, str) else model_or_path.SerializeToString()
    session = ort.InferenceSession(source, providers=['CPUExecutionProvider'])
    return session.run(None, {'input': batch})[0]


def test_rewrites_of_the_published_caformer_graph_change_only_rounding(timm_repos):
    path = _published_caformer(timm_repos)
    original = onnx.load(path)
    before = _ops(original)
    rewritten, rewrites = onnx_rewrites.rewrite_onnx_graph(onnx.load(path))
    after = _ops(rewritten)

    assert rewrites == ['fused_layer_norm', 'channels_last_stages', 'fused_attention', 'folded_star_relu']
    # test_caformer: 2 norms in each of its 5 blocks, the stem's and 3 downsamplings' norms, the head's
    assert after['LayerNormalization'] == 15 and after['ReduceMean'] == 0
    assert after['MultiHeadAttention'] == 2 and after['Softmax'] == before['Softmax'] - 2
    assert after['Pow'] == 0
    assert after['Transpose'] < before['Transpose']
    # channels-last: no 1 x 1 convolution left, the depthwise ones alone run NCHW, between two
    # transposes, and no transpose is undone by the next or made twice
    consumers = collections.defaultdict(list)
    for node in rewritten.graph.node:
        for name in node.input:
            consumers[name].append(node)
    perm = {node.output[0]: tuple(node.attribute[0].ints)
            for node in rewritten.graph.node if node.op_type == 'Transpose'}
    convs = {node.name: onnx.helper.get_attribute_value(next(a for a in node.attribute if a.name == 'kernel_shape'))
             for node in rewritten.graph.node if node.op_type == 'Conv'}
    assert [1, 1] not in convs.values()
    depthwise = [node for node in rewritten.graph.node if node.op_type == 'Conv' and 'dwconv' in node.name]
    assert len(depthwise) == 3
    for conv in depthwise:
        assert perm.get(conv.input[0]) == (0, 3, 1, 2)
        assert [perm.get(user.output[0]) for user in consumers[conv.output[0]]] == [(0, 2, 3, 1)]
    for node in rewritten.graph.node:
        if node.op_type == 'Transpose':
            assert not (perm[node.output[0]] == (0, 2, 3, 1) and perm.get(node.input[0]) == (0, 3, 1, 2))
    pairs = [(node.input[0], perm[node.output[0]]) for node in rewritten.graph.node if node.op_type == 'Transpose']
    assert len(pairs) == len(set(pairs))
    assert {entry.key for entry in rewritten.metadata_props} == {entry.key for entry in original.metadata_props}

    batch = np.random.default_rng(0).normal(size=(3, 3, 64, 64)).astype(np.float32)
    expected, actual = _run(path, batch), _run(rewritten, batch)
    assert actual.shape == expected.shape == (3, 4)
    assert np.abs(actual - expected).max() < 1e-5
    # in log-probabilities too, where this random model's near-certain rows still differ
    assert np.abs(np.log(actual) - np.log(expected)).max() < 1e-3
    assert np.abs(np.log(expected) - np.log(expected[0])).max() > 0.5  # the images are told apart


def _input_ranks(model, op_type: str, batch) -> list:
    """The rank of the first input of every ``op_type`` node, as onnxruntime computes it on ``batch``."""
    names = [node.input[0] for node in model.graph.node if node.op_type == op_type]
    model.graph.output.extend(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
                              for name in dict.fromkeys(names) if name not in {o.name for o in model.graph.output})
    session = ort.InferenceSession(model.SerializeToString(), providers=['CPUExecutionProvider'])
    values = dict(zip([o.name for o in session.get_outputs()], session.run(None, {'input': batch})))
    return [values[name].ndim for name in names]


def test_openvino_rewrites_carry_the_channels_last_stages_as_rows(timm_repos):
    path = _published_caformer(timm_repos)
    before = _ops(onnx.load(path))
    rewritten, rewrites = onnx_rewrites.rewrite_onnx_graph(onnx.load(path), onnx_rewrites.OPENVINO_REWRITES)
    after = _ops(rewritten)

    assert rewrites == ['fused_layer_norm', 'channels_last_stages', 'channels_last_rows']
    assert after['LayerNormalization'] == 15 and after['MultiHeadAttention'] == 0
    assert after['Softmax'] == before['Softmax'] and after['Pow'] > 0  # attention and StarReLU left to OpenVINO
    # the layer norms that read images [N, H, W, C] in onnxruntime's rewrite (the stem's, the
    # convolutional blocks' and the downsamplings') read rows [N, H*W, C] here, like the others
    batch = np.random.default_rng(0).normal(size=(2, 3, 64, 64)).astype(np.float32)
    onnxruntime_ranks = _input_ranks(onnx_rewrites.rewrite_onnx_graph(onnx.load(path))[0], 'LayerNormalization', batch)
    assert onnxruntime_ranks.count(4) == 10
    assert _input_ranks(copy.deepcopy(rewritten), 'LayerNormalization', batch) == [3] * 14 + [2]  # + the head's
    # shaped back to images only for the transposes to NCHW: before the 3 depthwise convolutions,
    # the 2 downsamplings that follow a convolutional stage, and the head's norm
    images = {node.output[0] for node in rewritten.graph.node if node.name.startswith('rows_to_image')}
    readers = [(node.op_type, tuple(node.attribute[0].ints)) for node in rewritten.graph.node
               if set(node.input) & images]
    assert len(images) == 6 and readers == [('Transpose', (0, 3, 1, 2))] * 6
    # no shape recorded in the graph contradicts the rows (onnxruntime would warn on every load)
    recorded = {info.name: len(info.type.tensor_type.shape.dim) for info in rewritten.graph.value_info}
    norms = [node for node in rewritten.graph.node if node.op_type == 'LayerNormalization']
    assert all(recorded.get(node.output[0], 3) == 3 for node in norms[:-1])

    expected, actual = _run(path, batch), _run(rewritten, batch)
    assert actual.shape == expected.shape == (2, 4)
    assert np.abs(actual - expected).max() < 1e-5


def test_unknown_rewrites_are_named():
    with pytest.raises(ValueError, match=r"Unknown rewrites \['fused_gelu'\]; choose among"):
        onnx_rewrites.rewrite_onnx_graph(onnx.ModelProto(), ['fused_layer_norm', 'fused_gelu'])


def test_graph_without_the_patterns_is_left_alone():
    from tests.support.fake_hub import classifier_repo_files
    model = onnx.load_from_string(classifier_repo_files()['model.onnx'])
    before = model.SerializeToString()
    rewritten, rewrites = onnx_rewrites.rewrite_onnx_graph(model)
    assert rewrites == []
    assert rewritten.SerializeToString() == before


def test_backend_runs_the_checked_rewrite_and_caches_it(timm_repos, fresh_cache, monkeypatch):
    source = resolve_model(timm_repos['caformer'])
    model = load_face_quality_model(source.model_name)
    assert model.run_path.startswith(str(fresh_cache / 'rewritten'))
    assert model.graph_rewrites == ['fused_layer_norm', 'channels_last_stages', 'fused_attention', 'folded_star_relu']
    with open(os.path.join(os.path.dirname(model.run_path), 'rewrite.json')) as file:
        report = json.load(file)
    assert report['max_difference'] <= report['tolerance'] == 1e-4
    assert report['source'] == os.path.realpath(model.onnx_path)

    from imgutils_facequal.graphs.check import check_images
    images = check_images()
    rewritten_scores = model.scores(images)

    forget_loaded_models()
    monkeypatch.setenv(graph_cache.REWRITE_ENV, '0')
    as_published = load_face_quality_model(source.model_name)
    assert as_published.run_path == as_published.onnx_path and as_published.graph_rewrites == []
    published_scores = as_published.scores(images)
    assert max(abs(a[name] - b[name]) for a, b in zip(rewritten_scores, published_scores) for name in a) < 1e-5

    # a second load finds the cached graph and rewrites nothing
    def no_rewriting(model, rewrites=None):
        raise AssertionError('rewrote the graph again')
    forget_loaded_models()
    monkeypatch.delenv(graph_cache.REWRITE_ENV)
    monkeypatch.setattr(graph_cache, 'rewrite_onnx_graph', no_rewriting)
    again = load_face_quality_model(source.model_name)
    assert again.run_path == model.run_path and again.graph_rewrites == model.graph_rewrites


def test_a_rewrite_that_changes_the_numbers_is_refused(timm_repos, fresh_cache, monkeypatch):
    real_rewrite = onnx_rewrites.rewrite_onnx_graph

    def wrong_rewrite(model, rewrites):  # the real rewrites, then one layer norm weight off by 10%
        model, rewrites = real_rewrite(model, rewrites)
        weight = next(t for t in model.graph.initializer if t.name.startswith('layer_norm_weight'))
        weight.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(weight) * 1.1, weight.name))
        return model, rewrites

    monkeypatch.setattr(graph_cache, 'rewrite_onnx_graph', wrong_rewrite)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        model = load_face_quality_model(timm_repos['caformer'])
    assert model.run_path == model.onnx_path and model.graph_rewrites == []
    assert 'the rewrite differed' in model.graph_note
    assert any('running the original graph' in str(w.message) for w in caught)
    folder = os.path.join(str(fresh_cache), 'rewritten')
    (entry,) = os.listdir(folder)
    assert not os.path.exists(os.path.join(folder, entry, 'model.onnx'))
    with open(os.path.join(folder, entry, 'rewrite.json')) as file:
        assert json.load(file)['max_difference'] > 1e-4


def test_graphs_with_nothing_to_rewrite_run_as_they_are(fresh_cache):
    model = load_face_quality_model('caformer_s36.head_crop')
    assert model.run_path == model.onnx_path and model.graph_rewrites == []
    assert model.graph_note == 'the original graph: nothing to rewrite'


def test_a_rewrite_onnxruntime_cannot_open_is_dropped_and_remembered(timm_repos, fresh_cache, monkeypatch):
    def unrunnable_rewrite(model, rewrites=None):  # a graph with an operator no provider has
        node = model.graph.node.add()
        node.CopyFrom(onnx.helper.make_node('NoSuchOperator', ['input'], ['unused'], domain='test.nowhere'))
        model.graph.output.add().name = 'unused'
        return model, ['fused_layer_norm']

    monkeypatch.setattr(graph_cache, 'rewrite_onnx_graph', unrunnable_rewrite)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        model = load_face_quality_model(timm_repos['caformer'])
    assert model.run_path == model.onnx_path and 'rewriting failed' in model.graph_note
    assert any('Could not rewrite' in str(w.message) and model.onnx_path in str(w.message) for w in caught)
    assert len(model.scores([Image.new('RGB', (64, 64))])) == 1  # the original graph runs

    def no_rewriting(model, rewrites=None):
        raise AssertionError('tried to rewrite again')
    forget_loaded_models()
    monkeypatch.setattr(graph_cache, 'rewrite_onnx_graph', no_rewriting)
    assert 'rewriting failed' in load_face_quality_model(timm_repos['caformer']).graph_note


def test_a_corrupt_model_file_is_reported_as_corrupt_not_as_a_rewrite_failure(tmp_path, fresh_cache):
    from tests.support.fake_hub import classifier_repo_files
    from imgutils_facequal.errors import ModelNotAvailableError
    for name, data in classifier_repo_files().items():
        (tmp_path / name).write_bytes(b'not an onnx graph' if name == 'model.onnx' else data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        with pytest.raises(ModelNotAvailableError, match='corrupt'):
            load_face_quality_model(str(tmp_path))
    assert not any('rewrite' in str(w.message) for w in caught)
    assert not os.path.exists(os.path.join(str(fresh_cache), 'rewritten'))
