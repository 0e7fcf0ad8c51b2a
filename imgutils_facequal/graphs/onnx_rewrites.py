"""Exact rewrites of a published caformer ONNX graph, for onnxruntime and OpenVINO, without torch.

The published ``model.onnx`` files are traced at opset 14, where a layer norm has no
operator of its own and attention is written out head by head, so onnxruntime runs it
slower than the project's own export (`graphs.torch_rewrites`), which needs torch.
`rewrite_onnx_graph` gets most of the way there on the graph itself, by finding the
patterns the torch exporter writes for timm's MetaFormer layers:

* ``fused_layer_norm``: ``ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div, Mul[, Add]``
  becomes one ``LayerNormalization``;
* ``channels_last_stages``: 1 x 1 convolutions become matrix products over the channel
  axis, and the layout transposes this creates cancel against the ones around each
  channel layer norm, so the convolutional stages run channels-last;
* ``fused_attention``: per-head reshapes, transposes, ``MatMul``, ``Softmax``, ``MatMul``
  become onnxruntime's ``com.microsoft`` ``MultiHeadAttention`` (CPU and CUDA providers);
* ``folded_star_relu``: ``s * relu(x) ** 2 + b`` followed by a matrix product ``W``
  becomes ``relu(x) * relu(x)`` and the product ``s W`` plus bias ``b W 1``;
* ``channels_last_rows``, for OpenVINO: the channels-last tensors between convolutions
  are carried as rows of tokens ``[N, H*W, C]``, so OpenVINO keeps them in one layout
  instead of reordering them before every layer norm.

Only float rounding changes. Nothing here checks numbers: the ONNX and OpenVINO backends
run the rewritten graph against the original on the export's check images before using it
(`graph_cache`). Needs the ``onnx`` package.
"""
import collections
import copy
from typing import Dict, List, Optional, Sequence, Tuple

__all__ = ['rewrite_onnx_graph', 'ONNXRUNTIME_REWRITES', 'OPENVINO_REWRITES']

#: What onnxruntime runs fastest (``channels_last_rows`` is for OpenVINO only: it slows onnxruntime down).
ONNXRUNTIME_REWRITES = ('fused_layer_norm', 'channels_last_stages', 'fused_attention', 'folded_star_relu')
#: What OpenVINO runs fastest: its own attention fusion and StarReLU kernels did as well or
#: better than the fused forms, and without ``com.microsoft`` operators OpenVINO before
#: 2026.3 reads the rewrite too.
OPENVINO_REWRITES = ('fused_layer_norm', 'channels_last_stages', 'channels_last_rows')

_TO_NHWC, _TO_NCHW = [0, 2, 3, 1], [0, 3, 1, 2]
_ELEMENTWISE = ('Relu', 'Mul', 'Add', 'Sub', 'Div', 'Pow')


class _Graph:
    """A mutable view of an ONNX graph: producers, consumers and constant values."""

    def __init__(self, model):
        self.model = model
        self.graph = model.graph
        # edited as a Python list (protobuf containers copy what they are given, so the
        # nodes held here would go stale), written back by commit()
        self.nodes = list(model.graph.node)
        self._names = collections.Counter()
        self.refresh()

    def refresh(self):
        self.producer = {output: node for node in self.nodes for output in node.output}
        self.consumers = collections.defaultdict(list)
        for node in self.nodes:
            for name in node.input:
                self.consumers[name].append(node)
        self.initializers = {tensor.name: tensor for tensor in self.graph.initializer}
        self.outputs = {output.name for output in self.graph.output}

    def unique(self, base: str) -> str:
        self._names[base] += 1
        return f'{base}__facequal{self._names[base]}'

    def constant(self, name: str):
        """The value of a constant tensor (initializer, ``Constant`` or an ``Identity`` of one), else ``None``."""
        from onnx import numpy_helper
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producer.get(name)
        if node is None:
            return None
        if node.op_type == 'Constant' and len(node.attribute) == 1 and node.attribute[0].name == 'value':
            return numpy_helper.to_array(node.attribute[0].t)
        if node.op_type == 'Identity':
            return self.constant(node.input[0])
        return None

    def add_constant(self, base: str, value) -> str:
        from onnx import numpy_helper
        name = self.unique(base)
        self.graph.initializer.append(numpy_helper.from_array(value, name))
        self.initializers[name] = self.graph.initializer[-1]
        return name

    def sole_consumer(self, name: str, op_type: str):
        consumers = self.consumers[name]
        if len(consumers) == 1 and consumers[0].op_type == op_type and name not in self.outputs:
            return consumers[0]
        return None

    def replace_nodes(self, removed: List, added_before: Dict[int, List]) -> None:
        """Drop ``removed`` nodes and insert new ones before the node with the given ``id``."""
        removed_ids = {id(node) for node in removed}
        nodes = []
        for node in self.nodes:
            nodes.extend(added_before.get(id(node), []))
            if id(node) not in removed_ids:
                nodes.append(node)
        self.nodes = nodes
        self.refresh()

    def insert_after(self, anchor, node) -> None:
        index = [id(item) for item in self.nodes].index(id(anchor))
        self.nodes.insert(index + 1, node)
        self.refresh()

    def prune(self) -> None:
        """Remove nodes and initializers nothing needs any more."""
        needed = set(self.outputs)
        kept = []
        for node in reversed(self.nodes):
            if any(output in needed for output in node.output):
                kept.append(node)
                needed.update(node.input)
        kept.reverse()
        self.nodes = kept
        initializers = [tensor for tensor in self.graph.initializer if tensor.name in needed]
        del self.graph.initializer[:]
        self.graph.initializer.extend(initializers)
        self.refresh()

    def commit(self) -> None:
        nodes = [copy.deepcopy(node) for node in self.nodes]
        del self.graph.node[:]
        self.graph.node.extend(nodes)


def _attribute(node, name: str, default=None):
    from onnx import helper
    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _reduces_last_axis(graph: _Graph, node) -> bool:
    if node is None or node.op_type != 'ReduceMean' or _attribute(node, 'keepdims', 1) != 1:
        return False
    axes = _attribute(node, 'axes')
    if axes is None and len(node.input) > 1:  # opset 18: axes are an input
        axes = graph.constant(node.input[1])
    return axes is not None and [int(axis) for axis in list(axes)] == [-1]


def _is_scalar(value, expected: Optional[float] = None) -> bool:
    return value is not None and value.size == 1 and (expected is None or float(value.reshape(())) == expected)


def _other_constant(graph: _Graph, node, operand: str):
    """The constant second input of a binary ``node`` whose other input is ``operand``."""
    if node is None or len(node.input) != 2 or operand not in node.input:
        return None
    other = node.input[1] if node.input[0] == operand else node.input[0]
    return graph.constant(other)


def _fuse_layer_norms(graph: _Graph) -> int:
    import numpy as np
    from onnx import helper
    removed, added = [], {}
    for mean in list(graph.nodes):
        if not _reduces_last_axis(graph, mean):
            continue
        x = mean.input[0]
        centre = graph.sole_consumer(mean.output[0], 'Sub')
        if centre is None or list(centre.input) != [x, mean.output[0]] or centre.output[0] in graph.outputs:
            continue
        users = graph.consumers[centre.output[0]]
        square = next((node for node in users if node.op_type == 'Pow'), None)
        divide = next((node for node in users if node.op_type == 'Div'), None)
        if len(users) != 2 or square is None or divide is None or divide.input[0] != centre.output[0] \
                or square.input[0] != centre.output[0] or not _is_scalar(graph.constant(square.input[1]), 2.0):
            continue
        variance = graph.sole_consumer(square.output[0], 'ReduceMean')
        if not _reduces_last_axis(graph, variance):
            continue
        plus_eps = graph.sole_consumer(variance.output[0], 'Add')
        eps = _other_constant(graph, plus_eps, variance.output[0])
        root = graph.sole_consumer(plus_eps.output[0], 'Sqrt') if _is_scalar(eps) else None
        if root is None or graph.sole_consumer(root.output[0], 'Div') is not divide:
            continue
        scale = graph.sole_consumer(divide.output[0], 'Mul')
        weight = graph.constant(scale.input[1]) if scale is not None else None
        if weight is None or weight.ndim != 1:
            continue
        chain, output, bias = [mean, centre, square, variance, plus_eps, root, divide, scale], scale.output[0], None
        shift = graph.sole_consumer(output, 'Add')
        if shift is not None:
            bias = graph.constant(shift.input[1])
            if bias is not None and bias.shape == weight.shape:
                chain.append(shift)
                output = shift.output[0]
            else:
                bias = None
        if bias is None:
            bias = np.zeros_like(weight)
        norm = helper.make_node(
            'LayerNormalization',
            [x, graph.add_constant('layer_norm_weight', weight.astype(np.float32)),
             graph.add_constant('layer_norm_bias', bias.astype(np.float32))],
            [output], name=graph.unique(mean.name or 'layer_norm'), axis=-1, epsilon=float(eps.reshape(())))
        removed += chain
        added[id(mean)] = [norm]
    if added:
        graph.replace_nodes(removed, added)
    return len(added)


def _is_pointwise_conv(graph: _Graph, node) -> bool:
    if node.op_type != 'Conv' or _attribute(node, 'group', 1) != 1:
        return False
    if list(_attribute(node, 'strides', [1, 1])) != [1, 1] or list(_attribute(node, 'dilations', [1, 1])) != [1, 1]:
        return False
    if list(_attribute(node, 'pads', [0, 0, 0, 0])) != [0, 0, 0, 0] or _attribute(node, 'auto_pad', b'NOTSET') not in (
            b'NOTSET', b'VALID', 'NOTSET', 'VALID'):
        return False
    weight = graph.constant(node.input[1])
    return weight is not None and weight.ndim == 4 and weight.shape[2:] == (1, 1)


def _pointwise_convs_as_matmuls(graph: _Graph) -> int:
    """Each 1 x 1 convolution becomes transpose to NHWC, MatMul, bias Add, transpose back."""
    import numpy as np
    from onnx import helper
    removed, added = [], {}
    for conv in graph.nodes:
        if not _is_pointwise_conv(graph, conv):
            continue
        weight = graph.constant(conv.input[1])
        bias = graph.constant(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else None
        channels_last = graph.unique(conv.output[0] + '_nhwc_in')
        product = graph.unique(conv.output[0] + '_nhwc')
        nodes = [helper.make_node('Transpose', [conv.input[0]], [channels_last], perm=_TO_NHWC,
                                  name=graph.unique('to_nhwc')),
                 helper.make_node('MatMul', [channels_last, graph.add_constant(
                     'pointwise_weight', np.ascontiguousarray(weight[:, :, 0, 0].T.astype(np.float32)))],
                     [product], name=graph.unique(conv.name or 'pointwise'))]
        if bias is not None:
            biased = graph.unique(conv.output[0] + '_nhwc_biased')
            nodes.append(helper.make_node('Add', [product, graph.add_constant('pointwise_bias',
                                                                              bias.astype(np.float32))],
                                          [biased], name=graph.unique('pointwise_bias')))
            product = biased
        nodes.append(helper.make_node('Transpose', [product], [conv.output[0]], perm=_TO_NCHW,
                                      name=graph.unique('to_nchw')))
        removed.append(conv)
        added[id(conv)] = nodes
    if added:
        graph.replace_nodes(removed, added)
    return len(added)


def _perm(node) -> Optional[List[int]]:
    if node is None or node.op_type != 'Transpose':
        return None
    return [int(axis) for axis in _attribute(node, 'perm', [])]


def _channels_last_operand(graph: _Graph, name: str):
    """The NHWC form of an operand of an element-wise node whose other input moved to NHWC.

    Returns ``(name, node_to_insert_or_None)``, or ``None`` when there is no cheap form.
    """
    import numpy as np
    from onnx import helper
    value = graph.constant(name)
    if value is not None:
        if value.size == 1:
            return name, None
        if value.ndim in (3, 4) and value.shape[-2:] == (1, 1) and (value.ndim == 3 or value.shape[0] == 1):
            return graph.add_constant('channels_last_constant', np.ascontiguousarray(value.reshape(-1))), None
        return None
    producer = graph.producer.get(name)
    if _perm(producer) == _TO_NCHW and len(graph.consumers[name]) == 1 and name not in graph.outputs:
        return producer.input[0], None
    transposed = graph.unique(name + '_nhwc')
    return transposed, helper.make_node('Transpose', [name], [transposed], perm=_TO_NHWC, name=graph.unique('to_nhwc'))


def _sink_one_transpose(graph: _Graph) -> bool:
    """One step of moving to-NCHW transposes down the graph until they meet a to-NHWC one."""
    from onnx import helper
    for transpose in graph.nodes:
        if _perm(transpose) != _TO_NCHW:
            continue
        source, output = transpose.input[0], transpose.output[0]
        users = graph.consumers[output]
        undo = next((node for node in users if _perm(node) == _TO_NHWC and node.output[0] not in graph.outputs), None)
        if undo is not None:
            for user in graph.consumers[undo.output[0]]:
                user.input[:] = [source if name == undo.output[0] else name for name in user.input]
            graph.replace_nodes([undo] + ([transpose] if len(users) == 1 and output not in graph.outputs else []), {})
            return True
        if len(users) != 1 or output in graph.outputs or users[0].op_type not in _ELEMENTWISE:
            continue
        user = users[0]
        if user.op_type == 'Pow' and user.input[0] != output:
            continue
        inputs, inserted, dropped = [], [], [transpose]
        for name in user.input:
            if name == output:
                inputs.append(source)
                continue
            operand = _channels_last_operand(graph, name)
            if operand is None or (operand[1] is not None and user.op_type not in ('Add', 'Sub', 'Mul', 'Div')):
                break
            if operand[1] is None and graph.constant(name) is None:
                dropped.append(graph.producer[name])
            inputs.append(operand[0])
            if operand[1] is not None:
                inserted.append(operand[1])
        else:
            result = user.output[0]
            channels_last = graph.unique(result + '_nhwc')
            user.input[:] = inputs
            user.output[0] = channels_last
            back = helper.make_node('Transpose', [channels_last], [result], perm=_TO_NCHW, name=graph.unique('to_nchw'))
            graph.replace_nodes(dropped, {id(user): inserted})
            graph.insert_after(user, back)
            return True
    return False


def _merge_duplicate_transposes(graph: _Graph) -> None:
    """One transpose per tensor and permutation (a residual and its layer norm may each have asked for one)."""
    first = {}
    renamed = {}
    for node in graph.nodes:
        if node.op_type == 'Transpose' and node.output[0] not in graph.outputs:
            key = (node.input[0], tuple(_perm(node)))
            if key in first:
                renamed[node.output[0]] = first[key]
            else:
                first[key] = node.output[0]
    for node in graph.nodes:
        node.input[:] = [renamed.get(name, name) for name in node.input]
    graph.refresh()


def _count(graph: _Graph, op_type: str) -> int:
    return sum(node.op_type == op_type for node in graph.nodes)


def _channels_last_stages(graph: _Graph) -> int:
    """1 x 1 convolutions as MatMuls, kept only when the layout transposes then cancel."""
    before = _count(graph, 'Transpose')
    saved = [copy.deepcopy(node) for node in graph.nodes]
    converted = _pointwise_convs_as_matmuls(graph)
    if not converted:
        return 0
    while _sink_one_transpose(graph):
        pass
    _merge_duplicate_transposes(graph)
    graph.prune()
    if _count(graph, 'Transpose') > before:
        graph.nodes = saved
        graph.refresh()
        return 0
    return converted


def _unbound_heads(graph: _Graph, names: List[str]):
    """The packed projection and head layout behind q, k, v taken apart by Split+Squeeze or Gather.

    Returns ``(qkv, heads, head_size)`` when ``names`` are the three slices, in order, of
    ``Transpose(Reshape(qkv, [batch, tokens, 3, heads, head_size]), [2, 0, 3, 1, 4])``.
    """
    producers = [graph.producer.get(name) for name in names]
    if any(node is None for node in producers):
        return None
    if all(node.op_type == 'Squeeze' for node in producers):
        split = graph.producer.get(producers[0].input[0])
        if split is None or split.op_type != 'Split' or list(split.output) != [node.input[0] for node in producers]:
            return None
        if _attribute(split, 'axis', 0) != 0:
            return None
        packed = split.input[0]
    elif all(node.op_type == 'Gather' for node in producers):
        if len({node.input[0] for node in producers}) != 1 or any(_attribute(n, 'axis', 0) != 0 for n in producers):
            return None
        indices = [graph.constant(node.input[1]) for node in producers]
        if not all(_is_scalar(index) for index in indices) or [int(i.reshape(())) for i in indices] != [0, 1, 2]:
            return None
        packed = producers[0].input[0]
    else:
        return None
    transpose = graph.producer.get(packed)
    if _perm(transpose) != [2, 0, 3, 1, 4]:
        return None
    reshape = graph.producer.get(transpose.input[0])
    if reshape is None or reshape.op_type != 'Reshape':
        return None
    shape = graph.constant(reshape.input[1])
    if shape is not None:
        tail = [int(value) for value in shape.reshape(-1)[-3:]] if shape.size == 5 else None
    else:
        concat = graph.producer.get(reshape.input[1])
        if concat is None or concat.op_type != 'Concat' or len(concat.input) != 5:
            return None
        values = [graph.constant(name) for name in concat.input[2:]]
        tail = [int(value.reshape(())) for value in values] if all(_is_scalar(v) for v in values) else None
    if tail is None or tail[0] != 3 or min(tail) <= 0:
        return None
    return reshape.input[0], tail[1], tail[2]


#: The scale of a side that scaled_dot_product_attention, traced at opset 14, multiplies by
#: sqrt(1 / sqrt(head_size)) computed from the shape at run time.
_SDPA_SCALE = 'sdpa'


def _attention_scale(graph: _Graph, operand: str):
    """The tensor under an optional scaling ``Mul``, and the factor: a number,
    `_SDPA_SCALE`, or ``None`` when unknown."""
    node = graph.producer.get(operand)
    if node is None or node.op_type != 'Mul' or len(node.input) != 2:
        return operand, 1.0
    tensor, factor = node.input
    if graph.constant(tensor) is not None:
        tensor, factor = factor, tensor
    value = graph.constant(factor)
    if _is_scalar(value):
        return tensor, float(value.reshape(()))
    root = graph.producer.get(factor)
    return tensor, (_SDPA_SCALE if root is not None and root.op_type == 'Sqrt' else None)


def _fuse_attention(graph: _Graph) -> int:
    import numpy as np
    from onnx import helper
    removed, added = [], {}
    for softmax in graph.nodes:
        if softmax.op_type != 'Softmax' or _attribute(softmax, 'axis', -1) not in (-1, 3):
            continue
        scores, scores_scale = graph.producer.get(softmax.input[0]), 1.0
        if scores is not None and scores.op_type == 'Mul':  # (q @ k^T) * scale, timm's unfused path
            factor = _other_constant(graph, scores, scores.input[0])
            if not _is_scalar(factor) or len(graph.consumers[scores.output[0]]) != 1:
                continue
            scores, scores_scale = graph.producer.get(scores.input[0]), float(factor.reshape(()))
        weighted = graph.sole_consumer(softmax.output[0], 'MatMul')
        if scores is None or scores.op_type != 'MatMul' or weighted is None or weighted.input[0] != softmax.output[0]:
            continue
        merge = graph.sole_consumer(weighted.output[0], 'Transpose')
        if _perm(merge) != [0, 2, 1, 3]:
            continue
        flatten = graph.sole_consumer(merge.output[0], 'Reshape')
        if flatten is None:
            continue
        query, query_scale = _attention_scale(graph, scores.input[0])
        key_transposed, key_scale = _attention_scale(graph, scores.input[1])
        key_transpose = graph.producer.get(key_transposed)
        if _perm(key_transpose) != [0, 1, 3, 2] or query_scale is None or key_scale is None:
            continue
        heads = _unbound_heads(graph, [query, key_transpose.input[0], weighted.input[1]])
        if heads is None:
            continue
        qkv, head_count, head_size = heads
        query_scale, key_scale = (float(head_size) ** -0.25 if scale == _SDPA_SCALE else scale
                                  for scale in (query_scale, key_scale))
        width = head_count * head_size
        tokens = graph.unique('qkv_tokens')
        q, k, v, attended = (graph.unique(name) for name in ('query', 'key', 'value', 'attended'))
        added[id(flatten)] = [
            helper.make_node('Reshape', [qkv, graph.add_constant('qkv_shape', np.array([0, -1, 3 * width], np.int64))],
                             [tokens], name=graph.unique('qkv_tokens')),
            helper.make_node('Split', [tokens, graph.add_constant('qkv_split', np.array([width] * 3, np.int64))],
                             [q, k, v], axis=-1, name=graph.unique('qkv_split')),
            helper.make_node('MultiHeadAttention', [q, k, v], [attended], domain='com.microsoft',
                             num_heads=head_count, scale=query_scale * key_scale * scores_scale,
                             name=graph.unique('attention')),
            helper.make_node('Reshape', [attended, flatten.input[1]], list(flatten.output),
                             name=graph.unique('heads_merged')),
        ]
        removed.append(flatten)
    if not added:
        return 0
    opset = {entry.domain: entry.version for entry in graph.model.opset_import}
    if opset.get('com.microsoft') is None:
        graph.model.opset_import.append(helper.make_opsetid('com.microsoft', 1))
    graph.replace_nodes(removed, added)
    return len(added)


def _fold_star_relus(graph: _Graph) -> int:
    """``Pow(relu, 2)`` as ``relu * relu``; StarReLU's scale and bias folded into a following MatMul."""
    import numpy as np
    from onnx import helper
    rewritten = 0
    for relu in list(graph.nodes):
        if relu.op_type != 'Relu':
            continue
        square = graph.sole_consumer(relu.output[0], 'Pow')
        if square is None or square.input[0] != relu.output[0] or not _is_scalar(graph.constant(square.input[1]), 2.0):
            continue
        square.op_type = 'Mul'
        square.input[:] = [relu.output[0], relu.output[0]]
        rewritten += 1
        scale_node = graph.sole_consumer(square.output[0], 'Mul')
        scale = _other_constant(graph, scale_node, square.output[0])
        shift_node = graph.sole_consumer(scale_node.output[0], 'Add') if _is_scalar(scale) else None
        shift = _other_constant(graph, shift_node, scale_node.output[0]) if shift_node is not None else None
        product = graph.sole_consumer(shift_node.output[0], 'MatMul') if _is_scalar(shift) else None
        weight = graph.constant(product.input[1]) if product is not None and product.input[0] == shift_node.output[0] \
            else None
        if weight is None or weight.ndim != 2:
            graph.refresh()
            continue
        weight64 = weight.astype(np.float64)
        result = product.output[0]
        unbiased = graph.unique(result + '_folded')
        product.input[:] = [square.output[0], graph.add_constant(
            'star_relu_folded_weight', (weight64 * float(scale.reshape(()))).astype(np.float32))]
        product.output[0] = unbiased
        bias = helper.make_node('Add', [unbiased, graph.add_constant(
            'star_relu_folded_bias', (float(shift.reshape(())) * weight64.sum(axis=0)).astype(np.float32))],
            [result], name=graph.unique('star_relu_folded_bias'))
        graph.replace_nodes([scale_node, shift_node], {})
        graph.insert_after(product, bias)
    graph.refresh()
    return rewritten


def _takes_rows(graph: _Graph, node, rows: Dict[str, str]) -> bool:
    """Whether ``node`` computes the same on rows ``[N, H*W, C]`` as on images ``[N, H, W, C]``."""
    if any(output in graph.outputs for output in node.output):
        return False

    def is_small_constant(name):
        value = graph.constant(name)
        return value is not None and value.ndim <= 1  # broadcasts along the channels alone

    if node.op_type == 'LayerNormalization':
        return (len(node.output) == 1 and _attribute(node, 'axis', -1) == -1 and node.input[0] in rows
                and all(is_small_constant(name) for name in node.input[1:]))
    if node.op_type == 'MatMul':
        weight = graph.constant(node.input[1])
        return node.input[0] in rows and weight is not None and weight.ndim == 2
    if node.op_type in _ELEMENTWISE:
        return all(name in rows or is_small_constant(name) for name in node.input)
    return False


def _channels_last_rows(graph: _Graph) -> int:
    """Channels-last tensors carried as rows of tokens ``[N, H*W, C]``, as images only where needed.

    What the channels-last stages do between their convolutions (layer norms over the
    channels, matrix products, element-wise arithmetic) reads no spatial axis, so each
    ``[N, H, W, C]`` tensor out of a to-NHWC transpose is reshaped to rows, and shaped back
    to an image only before an operator that needs one (the transpose back to NCHW for a
    convolution). OpenVINO otherwise carries such a 4-D tensor in a layout made for NCHW,
    and reorders it before every layer norm. Shapes are taken from the tensors at run
    time, so any input size works.
    """
    import numpy as np
    from onnx import helper
    saved = [copy.deepcopy(node) for node in graph.nodes]
    rows: Dict[str, str] = {}  # tensor carried as rows -> the shape [N, H, W, -1] that restores its image
    restored: Dict[str, str] = {}
    images: Dict[str, str] = {}  # rows -> the image they were reshaped from
    added: Dict[int, List] = {}
    renamed: Dict[str, str] = {}
    carried = 0
    for node in list(graph.nodes):
        node.input[:] = [renamed.get(name, name) for name in node.input]
        if any(name in rows for name in node.input):
            if _takes_rows(graph, node, rows):
                image_shape = next(rows[name] for name in node.input if name in rows)
                rows.update((output, image_shape) for output in node.output)
                carried += node.op_type in ('LayerNormalization', 'MatMul')
            else:
                for index, name in enumerate(node.input):
                    if name not in rows:
                        continue
                    if name in images:
                        node.input[index] = images[name]
                        continue
                    if name not in restored:
                        restored[name] = graph.unique(name + '_image')
                        added.setdefault(id(node), []).append(helper.make_node(
                            'Reshape', [name, rows[name]], [restored[name]], name=graph.unique('rows_to_image')))
                    node.input[index] = restored[name]
        if _perm(node) != _TO_NHWC or node.output[0] in graph.outputs:
            continue
        image = node.output[0]
        shape, batch, height_width, channels = (graph.unique(image + suffix) for suffix in
                                                ('_shape', '_batch', '_height_width', '_channels'))
        image_shape, row_shape, as_rows = (graph.unique(image + suffix) for suffix in
                                           ('_image_shape', '_row_shape', '_rows'))
        index = graph.nodes.index(node)
        graph.nodes[index + 1:index + 1] = [
            helper.make_node('Shape', [image], [shape], name=graph.unique('image_shape')),
            helper.make_node('Gather', [shape, graph.add_constant('batch_axis', np.array([0], np.int64))], [batch],
                             name=graph.unique('image_shape')),
            helper.make_node('Gather', [shape, graph.add_constant('spatial_axes', np.array([0, 1, 2], np.int64))],
                             [height_width], name=graph.unique('image_shape')),
            helper.make_node('Gather', [shape, graph.add_constant('channel_axis', np.array([3], np.int64))],
                             [channels], name=graph.unique('image_shape')),
            helper.make_node('Concat', [height_width, graph.add_constant('any_channels', np.array([-1], np.int64))],
                             [image_shape], axis=0, name=graph.unique('image_shape')),
            helper.make_node('Concat', [batch, graph.add_constant('any_tokens', np.array([-1], np.int64)), channels],
                             [row_shape], axis=0, name=graph.unique('row_shape')),
            helper.make_node('Reshape', [image, row_shape], [as_rows], name=graph.unique('image_to_rows')),
        ]
        renamed[image], images[as_rows] = as_rows, image
        rows[as_rows] = image_shape
    if not carried:
        graph.nodes = saved
        graph.refresh()
        return 0
    graph.replace_nodes([], added)
    graph.prune()
    shaped = [info for info in graph.graph.value_info if info.name not in rows]  # their recorded shapes are 4-D
    del graph.graph.value_info[:]
    graph.graph.value_info.extend(shaped)
    return carried


def rewrite_onnx_graph(model, rewrites: Sequence[str] = ONNXRUNTIME_REWRITES) -> Tuple[object, List[str]]:
    """Rewrite an ONNX ``ModelProto`` in place; returns ``(model, applied)``.

    ``rewrites`` picks among ``'fused_layer_norm'``, ``'channels_last_stages'``,
    ``'fused_attention'``, ``'folded_star_relu'`` and ``'channels_last_rows'`` (they run in
    that order): `ONNXRUNTIME_REWRITES` by default, `OPENVINO_REWRITES` for
    OpenVINO. ``applied`` lists those that found their pattern; empty when the graph has
    none of them (an export, or another architecture).

    Example, on a graph holding one layer norm written out at opset 14:

        >>> import numpy as np
        >>> from onnx import TensorProto, helper, numpy_helper
        >>> def const(name, value):
        ...     tensor = numpy_helper.from_array(np.asarray(value, np.float32))
        ...     return helper.make_node('Constant', [], [name], value=tensor)
        >>> node = helper.make_node
        >>> nodes = [const('two', 2.0), const('eps', 1e-6), const('w', [1.0, 2.0, 3.0]),
        ...          node('ReduceMean', ['x'], ['m'], axes=[-1]), node('Sub', ['x', 'm'], ['d']),
        ...          node('Pow', ['d', 'two'], ['p']), node('ReduceMean', ['p'], ['v'], axes=[-1]),
        ...          node('Add', ['v', 'eps'], ['ve']), node('Sqrt', ['ve'], ['s']),
        ...          node('Div', ['d', 's'], ['n']), node('Mul', ['n', 'w'], ['y'])]
        >>> graph = helper.make_graph(nodes, 'norm', [helper.make_tensor_value_info('x', TensorProto.FLOAT, [2, 3])],
        ...                           [helper.make_tensor_value_info('y', TensorProto.FLOAT, [2, 3])])
        >>> model, rewrites = rewrite_onnx_graph(helper.make_model(graph, opset_imports=[helper.make_opsetid('', 14)]))
        >>> rewrites, [node.op_type for node in model.graph.node]
        (['fused_layer_norm'], ['LayerNormalization'])
    """
    unknown = sorted(set(rewrites) - set(_REWRITES))
    if unknown:
        raise ValueError(f'Unknown rewrites {unknown}; choose among {list(_REWRITES)}.')
    graph = _Graph(model)
    counts = {name: rewrite(graph) for name, rewrite in _REWRITES.items() if name in rewrites}
    graph.prune()
    graph.commit()
    return model, [name for name, count in counts.items() if count]


_REWRITES = {
    'fused_layer_norm': _fuse_layer_norms,
    'channels_last_stages': _channels_last_stages,
    'fused_attention': _fuse_attention,
    'folded_star_relu': _fold_star_relus,
    'channels_last_rows': _channels_last_rows,
}
