"""Test repositories in the published layout for the transformers path.

A small timm model wrapped the way the model card's repositories are: a ``TimmModel``
(``PreTrainedModel``) with a ``TimmModelConfig`` carrying ``model_name``, ``model_args``,
``task_type`` and ``task_config.classes``, remote code that these tests write, an
``ImgutilsBasedImageProcessor`` whose ``stages`` are in imgutils' format, saved with
``save_pretrained``, plus a ``model.onnx`` exported the way the published exporter does
(``use_infer_head=True``, opset 14, dynamic batch, graph simplified with onnxsim,
JSON-encoded metadata).
"""
import importlib.util
import json
import os
import sys
import tempfile
import warnings
from typing import Dict, List, Sequence

MODELING_CODE = '''
import timm
import torch
from timm.models import is_model, register_model
from timm.models.metaformer import Attention, LayerNorm2dNoBias, LayerNormNoBias, MetaFormer, SepConv
from transformers import PretrainedConfig, PreTrainedModel

if not is_model('test_caformer'):  # the tests' stand-in for caformer_s36: its layer types, a few blocks
    @register_model
    def test_caformer(pretrained=False, pretrained_cfg=None, pretrained_cfg_overlay=None, cache_dir=None, **kwargs):
        return MetaFormer(depths=(1, 2, 1, 1), dims=(16, 32, 64, 64),
                          token_mixers=[SepConv, SepConv, Attention, Attention],
                          norm_layers=[LayerNorm2dNoBias] * 2 + [LayerNormNoBias] * 2, **kwargs)


class TimmModelConfig(PretrainedConfig):
    model_type = 'timm_model'

    def __init__(self, model_name='test_convnext', model_args=None, task_type='classification',
                 task_config=None, **kwargs):
        self.model_name = model_name
        self.model_args = dict(model_args or {})
        self.task_type = task_type
        self.task_config = dict(task_config or {})
        super().__init__(**kwargs)

    @property
    def classes(self):
        return list(self.task_config.get('classes') or [])


class TimmModel(PreTrainedModel):
    config_class = TimmModelConfig
    main_input_name = 'pixel_values'

    def __init__(self, config, use_infer_head=False):
        super().__init__(config)
        self.model = timm.create_model(config.model_name, pretrained=False,
                                       num_classes=len(config.classes), **config.model_args)
        self.use_infer_head = use_infer_head
        self.post_init()

    def _init_weights(self, module):
        pass  # timm initialises its own modules; saved weights are loaded over them

    def forward(self, pixel_values):
        logits = self.model(pixel_values)
        if self.config.task_config.get('trace_mismatch') and torch.jit.is_tracing():
            # Python-side control flow that tracing records differently: a broken export.
            logits = logits.flip(-1)
        return torch.softmax(logits, dim=-1) if self.use_infer_head else logits
'''

PROCESSING_CODE = '''
import torch
from imgutils.preprocess import create_torchvision_transforms, parse_torchvision_transforms
from transformers import BaseImageProcessor
from transformers.image_processing_base import BatchFeature
from transformers.image_utils import make_flat_list_of_images


class ImgutilsBasedImageProcessor(BaseImageProcessor):
    model_input_names = ['pixel_values']

    def __init__(self, stages=None, **kwargs):
        super().__init__(**kwargs)
        self.stages = create_torchvision_transforms(stages or [])

    def preprocess(self, images, return_tensors=None, **kwargs):
        images = make_flat_list_of_images(images)
        values = torch.stack([self.stages(image) for image in images])
        return BatchFeature(data={'pixel_values': values}, tensor_type=return_tensors)

    def to_dict(self):
        return {**super().to_dict(), 'stages': parse_torchvision_transforms(self.stages)}
'''

QUALITY_CLASSES = ['poor', 'ok', 'good', 'excellent']


def timm_stages(size: int) -> List[dict]:
    return [
        {'type': 'resize', 'size': size, 'interpolation': 'bicubic', 'max_size': None, 'antialias': True},
        {'type': 'center_crop', 'size': [size, size]},
        {'type': 'maybe_to_tensor'},
        {'type': 'normalize', 'mean': [0.485, 0.456, 0.406], 'std': [0.229, 0.224, 0.225]},
    ]


def perturb_metaformer_scales(model) -> None:
    """Move timm MetaFormer's learnable scales and norm weights off their initial 1 and 0, as training does.

    StarReLU starts as ``1 * relu(x) ** 2 + 0``, residual scales and layer norm weights at
    1, which would make folding them into neighbouring layers trivially exact, and lets
    onnxsim drop the norms' multiplications by one (a trained graph keeps them).
    """
    import torch
    from timm.models.metaformer import Scale, StarReLU
    generator = torch.Generator().manual_seed(12345)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, StarReLU):
                module.scale.copy_(0.5 + torch.rand(1, generator=generator))
                module.bias.copy_(torch.rand(1, generator=generator) - 0.5)
            elif isinstance(module, Scale):
                module.scale.copy_(0.5 + torch.rand(module.scale.shape, generator=generator))
            elif isinstance(module, torch.nn.LayerNorm):  # timm's LayerNorm2d and NoBias variants too
                if module.weight is not None:
                    module.weight.copy_(0.8 + 0.4 * torch.rand(module.weight.shape, generator=generator))
                if module.bias is not None:
                    module.bias.copy_(0.2 * torch.rand(module.bias.shape, generator=generator) - 0.1)


def _import_modeling(directory: str):
    name = f'facequal_test_modeling_{abs(hash(directory))}'
    spec = importlib.util.spec_from_file_location(name, os.path.join(directory, 'modeling_timm.py'))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def timm_repo_files(architecture: str = 'test_convnext', size: int = 64, classes: Sequence[str] = QUALITY_CLASSES,
                    model_args: Dict = None, with_onnx: bool = True, trace_mismatch: bool = False,
                    seed: int = 0) -> Dict[str, bytes]:
    """Every file of a published-layout repository for a randomly initialised timm model."""
    import torch

    with tempfile.TemporaryDirectory() as directory:
        with open(os.path.join(directory, 'modeling_timm.py'), 'w') as f:
            f.write(MODELING_CODE)
        with open(os.path.join(directory, 'processing_imgutils.py'), 'w') as f:
            f.write(PROCESSING_CODE)
        modeling = _import_modeling(directory)
        task_config = {'classes': list(classes)}
        if trace_mismatch:
            task_config['trace_mismatch'] = True
        config = modeling.TimmModelConfig(model_name=architecture, model_args=dict(model_args or {}),
                                          task_type='classification', task_config=task_config)
        config.auto_map = {'AutoConfig': 'modeling_timm.TimmModelConfig',
                           'AutoModel': 'modeling_timm.TimmModel'}
        config.architectures = ['TimmModel']
        torch.manual_seed(seed)
        model = modeling.TimmModel(config).eval()
        last_linear = [m for m in model.model.get_classifier().modules() if isinstance(m, torch.nn.Linear)][-1]
        with torch.no_grad():  # spread the logits so the classes differ clearly between images
            last_linear.weight.mul_(20.0)
            perturb_metaformer_scales(model)
        model.save_pretrained(directory)
        with open(os.path.join(directory, 'preprocessor_config.json'), 'w') as f:
            json.dump({
                'image_processor_type': 'ImgutilsBasedImageProcessor',
                'auto_map': {'AutoImageProcessor': 'processing_imgutils.ImgutilsBasedImageProcessor'},
                'stages': timm_stages(size),
            }, f)
        with open(os.path.join(directory, 'meta.json'), 'w') as f:
            json.dump({'classes': list(classes), 'name': architecture}, f)
        if with_onnx:
            _export_like_the_publisher(modeling, directory, size, list(classes))
        files = {}
        for name in os.listdir(directory):
            path = os.path.join(directory, name)
            if os.path.isfile(path):
                with open(path, 'rb') as f:
                    files[name] = f.read()
        return files


def _export_like_the_publisher(modeling, directory: str, size: int, classes: List[str]) -> None:
    import onnx
    import onnxsim
    import torch

    model = modeling.TimmModel.from_pretrained(directory, use_infer_head=True).eval()
    path = os.path.join(directory, 'model.onnx')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.onnx.export(model, (torch.randn(1, 3, size, size),), path, input_names=['input'],
                          output_names=['output'], dynamic_axes={'input': {0: 'batch'}, 'output': {0: 'batch'}},
                          opset_version=14, dynamo=False)
    graph, simplified = onnxsim.simplify(onnx.load(path))
    assert simplified, 'onnxsim could not check its simplified graph'
    for key, value in {'classes': classes, 'task_type': 'classification',
                       'model_name': model.config.model_name}.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.save(graph, path)
