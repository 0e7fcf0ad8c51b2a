"""Exact rewrites that make a timm MetaFormer (caformer, convformer) faster in onnxruntime.

`export_onnx` traces the model the card loads. Traced literally, caformer's two
convolutional stages run in NCHW with a channel layer norm written as transpose, layer
norm, transpose around every 1 x 1 convolution, so onnxruntime converts layouts back and
forth all the time; and every StarReLU (``s * relu(x) ** 2 + b``) costs four passes over
the widest tensors of the network. `rewrite_for_export` returns a copy of the model
that computes the same function with fewer memory passes:

* ``channels_last_stages``: the convolutional stages run channels-last, their 1 x 1
  convolutions as matrix products, the depthwise convolution alone in NCHW;
* ``folded_star_relu``: ``relu(x) ** 2`` becomes ``r * r``, and where a linear layer
  follows, StarReLU's scale and bias are folded into its weights
  (``W (s r^2 + b) = (s W) r^2 + b W 1``);
* ``fused_attention``: self-attention becomes onnxruntime's ``com.microsoft``
  ``MultiHeadAttention`` operator (CPU and CUDA providers), which never writes the
  tokens x tokens attention matrix to memory. The graph then needs onnxruntime, the
  runtime of the ONNX backend.

Only the float rounding changes; `export_onnx` still checks the exported graph
against the untouched torch model. Models without these layers are returned as they are.
Needs the ``torch`` extra (torch and timm).
"""
import copy
from typing import List, Tuple

__all__ = ['rewrite_for_export']


def _is_fusable_attention(module) -> bool:
    import torch
    from timm.models.metaformer import Attention
    return (isinstance(module, Attention) and isinstance(module.qkv, torch.nn.Linear)
            and module.qkv.out_features == 3 * module.attention_dim
            and module.proj.in_features == module.attention_dim and _is_identity(module.proj_drop)
            and _is_identity(module.attn_drop))


def _is_identity(module) -> bool:
    """Identity in eval mode, the only mode an export traces (dropout, drop path)."""
    import torch
    from timm.layers import DropPath
    return isinstance(module, (torch.nn.Identity, torch.nn.Dropout, DropPath))


def _is_pointwise_conv(module) -> bool:
    import torch
    return (isinstance(module, torch.nn.Conv2d) and module.kernel_size == (1, 1) and module.stride == (1, 1)
            and module.groups == 1 and module.padding in ((0, 0), 'valid'))


def _scale_or_identity(module) -> bool:
    from timm.models.metaformer import Scale
    return _is_identity(module) or isinstance(module, Scale)


def _convertible_conv_stage(stage) -> bool:
    """Whether every block of a MetaFormer stage is a SepConv block we can run channels-last."""
    import torch
    from timm.layers import Mlp
    from timm.models.metaformer import SepConv, StarReLU
    if not stage.use_nchw or len(stage.blocks) == 0:
        return False
    for block in stage.blocks:
        mixer, mlp = block.token_mixer, block.mlp
        if not (isinstance(block.norm1, torch.nn.LayerNorm) and isinstance(block.norm2, torch.nn.LayerNorm)
                and isinstance(mixer, SepConv) and isinstance(mlp, Mlp)):
            return False
        if not (_is_pointwise_conv(mixer.pwconv1) and _is_pointwise_conv(mixer.pwconv2)
                and _is_pointwise_conv(mlp.fc1) and _is_pointwise_conv(mlp.fc2)
                and isinstance(mlp.act, StarReLU) and _is_identity(mlp.norm)):
            return False
        if not all(_scale_or_identity(m) for m in (block.layer_scale1, block.res_scale1,
                                                     block.layer_scale2, block.res_scale2)):
            return False
        if not all(_is_identity(m) for m in (block.drop_path1, block.drop_path2, mlp.drop1, mlp.drop2)):
            return False
    return True


def _folded_linear(weight, bias, act):
    """Weight and bias of ``linear(act(x))`` for a StarReLU ``act``, as a function of ``relu(x) ** 2``."""
    import torch
    with torch.no_grad():
        folded_weight = weight * act.scale
        folded_bias = act.bias * weight.sum(dim=1)
        if bias is not None:
            folded_bias = folded_bias + bias
    return torch.nn.Parameter(folded_weight.clone(), requires_grad=False), \
        torch.nn.Parameter(folded_bias.clone(), requires_grad=False)


def _make_classes():
    import torch
    import torch.nn.functional as F  # noqa: N812
    from timm.models.metaformer import Scale, StarReLU

    def scaled(module, x):
        return x * module.scale if isinstance(module, Scale) else x

    def star_relu(act, x):
        relu = torch.relu(x)
        return act.scale * (relu * relu) + act.bias

    def layer_norm(norm, x):
        return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)

    def pointwise(conv):
        return torch.nn.Parameter(conv.weight.detach()[:, :, 0, 0].clone(), requires_grad=False)

    class ChannelsLastConvBlock(torch.nn.Module):
        def __init__(self, block):
            super().__init__()
            mixer, mlp = block.token_mixer, block.mlp
            self.norm1, self.norm2 = block.norm1, block.norm2
            self.res_scale1, self.layer_scale1 = block.res_scale1, block.layer_scale1
            self.res_scale2, self.layer_scale2 = block.res_scale2, block.layer_scale2
            self.act1, self.dwconv, self.act2 = mixer.act1, mixer.dwconv, mixer.act2
            self.pw1_weight, self.pw1_bias = pointwise(mixer.pwconv1), mixer.pwconv1.bias
            self.pw2_weight, self.pw2_bias = pointwise(mixer.pwconv2), mixer.pwconv2.bias
            self.fc1_weight, self.fc1_bias = pointwise(mlp.fc1), mlp.fc1.bias
            self.fc2_weight, self.fc2_bias = _folded_linear(pointwise(mlp.fc2), mlp.fc2.bias, mlp.act)

        def forward(self, x):  # x: N, H, W, C
            y = F.linear(layer_norm(self.norm1, x), self.pw1_weight, self.pw1_bias)
            y = star_relu(self.act1, y) if isinstance(self.act1, StarReLU) else self.act1(y)
            y = self.dwconv(y.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
            y = star_relu(self.act2, y) if isinstance(self.act2, StarReLU) else self.act2(y)
            y = F.linear(y, self.pw2_weight, self.pw2_bias)
            x = scaled(self.res_scale1, x) + scaled(self.layer_scale1, y)
            y = torch.relu(F.linear(layer_norm(self.norm2, x), self.fc1_weight, self.fc1_bias))
            y = F.linear(y * y, self.fc2_weight, self.fc2_bias)
            return scaled(self.res_scale2, x) + scaled(self.layer_scale2, y)

    class ChannelsLastConvStage(torch.nn.Module):
        def __init__(self, stage):
            super().__init__()
            self.downsample = stage.downsample
            self.blocks = torch.nn.Sequential(*(ChannelsLastConvBlock(block) for block in stage.blocks))

        def forward(self, x):  # x: N, C, H, W in and out, like the stage it replaces
            x = self.blocks(self.downsample(x).permute(0, 2, 3, 1))
            return x.permute(0, 3, 1, 2)

    class FoldedStarReluMlp(torch.nn.Module):
        def __init__(self, mlp):
            super().__init__()
            self.fc1 = mlp.fc1
            self.fc2_weight, self.fc2_bias = _folded_linear(mlp.fc2.weight, mlp.fc2.bias, mlp.act)

        def forward(self, x):
            y = torch.relu(self.fc1(x))
            return F.linear(y * y, self.fc2_weight, self.fc2_bias)

    class _MultiHeadAttention(torch.autograd.Function):
        """Scaled dot-product attention over heads; traced as onnxruntime's MultiHeadAttention."""

        @staticmethod
        def forward(ctx, query, key, value, num_heads, scale):  # N, L, heads * head_dim each
            batch, length, width = query.shape

            def heads(t):
                return t.reshape(batch, length, num_heads, width // num_heads).transpose(1, 2)
            out = F.scaled_dot_product_attention(heads(query), heads(key), heads(value), scale=scale)
            return out.transpose(1, 2).reshape(batch, length, width)

        @staticmethod
        def symbolic(g, query, key, value, num_heads, scale):
            out = g.op('com.microsoft::MultiHeadAttention', query, key, value, num_heads_i=num_heads, scale_f=scale)
            out.setType(query.type())
            return out

    class FusedAttention(torch.nn.Module):
        def __init__(self, attention):
            super().__init__()
            self.qkv, self.proj = attention.qkv, attention.proj
            self.num_heads, self.attention_dim = attention.num_heads, attention.attention_dim
            self.scale = float(attention.scale)

        def forward(self, x):
            query, key, value = self.qkv(x).split(self.attention_dim, dim=-1)
            return self.proj(_MultiHeadAttention.apply(query, key, value, self.num_heads, self.scale))

    return ChannelsLastConvStage, FoldedStarReluMlp, FusedAttention


def _foldable_mlp(module) -> bool:
    import torch
    from timm.layers import Mlp
    from timm.models.metaformer import StarReLU
    return (isinstance(module, Mlp) and isinstance(module.fc1, torch.nn.Linear)
            and isinstance(module.fc2, torch.nn.Linear) and isinstance(module.act, StarReLU)
            and all(_is_identity(m) for m in (module.drop1, module.norm, module.drop2)))


def rewrite_for_export(model) -> Tuple[object, List[str]]:
    """A copy of ``model`` rewritten for a faster ONNX graph, and the rewrites applied.

    The model itself is never changed. With nothing to rewrite (no timm MetaFormer
    layers, or timm missing) it comes back as it is, with an empty list.

    :param model: A torch module in eval mode (any wrapper around a timm model).
    :return: ``(module, rewrites)``, ``rewrites`` holding any of
        ``'channels_last_stages'``, ``'folded_star_relu'`` and ``'fused_attention'``.
    """
    try:
        from timm.models.metaformer import MetaFormerStage
    except ImportError:
        return model, []
    modules = list(model.modules())
    if not any(isinstance(m, MetaFormerStage) and _convertible_conv_stage(m) or _foldable_mlp(m)
               or _is_fusable_attention(m) for m in modules):
        return model, []

    model = copy.deepcopy(model)
    ChannelsLastConvStage, FoldedStarReluMlp, FusedAttention = _make_classes()  # noqa: N806
    rewrites = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, MetaFormerStage) and _convertible_conv_stage(child):
                setattr(parent, name, ChannelsLastConvStage(child))
                rewrites += ['channels_last_stages', 'folded_star_relu']
            elif _foldable_mlp(child):
                setattr(parent, name, FoldedStarReluMlp(child))
                rewrites.append('folded_star_relu')
            elif _is_fusable_attention(child):
                setattr(parent, name, FusedAttention(child))
                rewrites.append('fused_attention')
    return model.eval(), sorted(set(rewrites))
