"""The transformers backend: the model card's own way of loading and running the model.

``AutoImageProcessor`` and ``AutoModel`` with ``trust_remote_code=True`` and
``use_infer_head=True`` (so the model returns probabilities), classes from
``model.config.classes``, batched under ``torch.inference_mode()``, on CUDA when it is
available. Needs the ``torch`` extra: ``pip install 'imgutils-facequal[torch]'``.

``precision='bf16'`` (opt-in) runs each of the model's repeated blocks under
``torch.autocast`` in bfloat16 and keeps the stem, the downsampling layers and the head in
fp32: on CPUs with AVX512-BF16 or AMX it scores 1.6 × to 2 × faster than fp32 in torch, and its
probabilities stayed within 0.02 of fp32 on the benchmark's crops (see the Performance
page, and re-check on your own images: with the benchmark's random weights that
agreement is a numerical check only).
"""
import re
import threading
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

from .errors import BackendNotAvailableError, ModelNotAvailableError
from .models import ModelSource

if TYPE_CHECKING:  # annotations only: torch is imported on first use
    import numpy as np
    import torch

__all__ = ['FaceQualityTransformersModel', 'get_transformers_model', 'require_torch_extra', 'default_device',
           'PRECISIONS', 'bf16_blocks']

#: ``fp32`` (default) or ``bf16``: the repeated blocks under bfloat16 autocast.
PRECISIONS = ('fp32', 'bf16')
_BLOCK_NAME = re.compile(r'(^|\.)blocks\.\d+$')

_TORCH_EXTRA = "pip install 'imgutils-facequal[torch]'"


def require_torch_extra(purpose: str = 'The transformers backend'):
    """Import torch, timm and transformers, or say which extra installs them."""
    missing = []
    for name in ('torch', 'timm', 'transformers'):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise BackendNotAvailableError(
            f'{purpose} needs {", ".join(missing)}, which {"is" if len(missing) == 1 else "are"} not '
            f'installed. Install the torch extra: {_TORCH_EXTRA}'
        )


def default_device() -> str:
    """``cuda`` when torch sees a GPU, else ``cpu``."""
    import torch
    return 'cuda' if torch.cuda.is_available() else 'cpu'


def bf16_blocks(model) -> list:
    """The names of the modules ``precision='bf16'`` runs in bfloat16: the repeated blocks
    (``...blocks.N``, timm's name for them in MetaFormer, ViT and ConvNeXt models).

    Converting the stem and the downsampling layers too moved the benchmark's probabilities
    twice as far (up to 0.023 against 0.010 on 48 crops), for 4% more speed.
    """
    return [name for name, _ in model.named_modules() if _BLOCK_NAME.search(name)]


def check_precision(precision: str) -> None:
    """Raise ``ValueError`` unless ``precision`` is one of :data:`PRECISIONS`."""
    if precision not in PRECISIONS:
        raise ValueError(f'precision must be one of {", ".join(PRECISIONS)}; got {precision!r}.')


class FaceQualityTransformersModel:
    """A face-quality classifier loaded with transformers, as in the model card."""

    def __init__(self, source: ModelSource, device: Optional[str] = None, precision: str = 'fp32'):
        check_precision(precision)
        require_torch_extra()
        from transformers import AutoImageProcessor, AutoModel

        self.source = source
        self.device = device or default_device()
        where = f'Model {source.model_name!r} ({source.location})'
        location = source.local_dir if source.is_local else source.repo_id
        options = {'trust_remote_code': True}
        if not source.is_local and source.revision is not None:
            options['revision'] = source.revision
        try:
            self.processor = AutoImageProcessor.from_pretrained(location, **options)
            self.model = AutoModel.from_pretrained(location, use_infer_head=True, **options)
        except (OSError, ValueError) as err:
            raise ModelNotAvailableError(
                f'{where}: transformers cannot load it: {err} To fix it: run once with network '
                f'access so it lands in the Hugging Face cache, or point model_name at a local '
                f'directory in the published layout (config.json, model.safetensors, '
                f'preprocessor_config.json and the remote code).'
            ) from err
        self.model.eval().to(self.device)
        self.precision = precision
        if precision == 'bf16':
            self._run_blocks_in_bf16(where)
        classes = getattr(self.model.config, 'classes', None)
        if not classes:
            raise ModelNotAvailableError(f'{where}: model.config has no classes.')
        self.classes: List[str] = [str(name) for name in classes]
        self.stages = getattr(self.processor, 'to_dict', dict)().get('stages')
        self.run_count = 0
        self._lock = threading.Lock()

    def _run_blocks_in_bf16(self, where: str) -> None:
        import warnings
        import torch
        names = bf16_blocks(self.model)
        if not names:
            raise ValueError(
                f"{where}: precision='bf16' runs a model's repeated blocks (modules named "
                f"'blocks.N') in bfloat16, and this model has none. Use precision='fp32'."
            )
        device_type = torch.device(self.device).type
        if device_type == 'cpu' and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            warnings.warn("precision='bf16': this CPU has no bfloat16 instructions (AVX512-BF16 or AMX), so "
                          "torch emulates them and bf16 runs slower than fp32. Use precision='fp32'.",
                          RuntimeWarning, stacklevel=4)
        modules = dict(self.model.named_modules())
        for name in names:
            block = modules[name]
            block.forward = _in_bf16(block.forward, device_type)
            # autocast would cast these weights to bf16 on every call; cast once instead (the
            # same values, and 8% faster on the benchmark's CPU)
            for layer in block.modules():
                if isinstance(layer, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)):
                    for parameter in (layer.weight, layer.bias):
                        if parameter is not None:
                            parameter.data = parameter.data.to(torch.bfloat16)

    def preprocess(self, images: Sequence) -> 'torch.Tensor':
        """Decoded RGB images to ``pixel_values`` through the repository's image processor."""
        return self.processor(list(images), return_tensors='pt')['pixel_values']

    def predict(self, batch) -> 'np.ndarray':
        """One forward pass; probabilities ``[n, n_classes]``."""
        import torch
        from .onnx_backend import probabilities_from_output
        batch = torch.as_tensor(batch)
        with self._lock, torch.inference_mode():
            output = self.model(batch.to(self.device))
            self.run_count += 1
        output = getattr(output, 'logits', output)
        return probabilities_from_output(output.float().cpu().numpy())

    def scores(self, images: Sequence) -> List[Dict[str, float]]:
        """Class probabilities for decoded RGB images, in one forward pass."""
        probabilities = self.predict(self.preprocess(images))
        return [dict(zip(self.classes, map(float, row))) for row in probabilities]


def _in_bf16(forward, device_type: str):
    import torch

    def forward_in_bf16(*args, **kwargs):
        with torch.autocast(device_type, dtype=torch.bfloat16):
            return forward(*args, **kwargs).float()
    return forward_in_bf16


_models: Dict[Tuple, FaceQualityTransformersModel] = {}
_models_lock = threading.Lock()


def get_transformers_model(source: ModelSource, device: Optional[str] = None,
                           precision: str = 'fp32') -> FaceQualityTransformersModel:
    """The cached transformers model for a source, device and precision."""
    require_torch_extra()
    device = device or default_device()
    key = (source.repo_id, source.revision, source.local_dir, device, precision)
    model = _models.get(key)
    if model is None:
        with _models_lock:
            model = _models.get(key)
            if model is None:
                model = _models[key] = FaceQualityTransformersModel(source, device, precision)
    return model
