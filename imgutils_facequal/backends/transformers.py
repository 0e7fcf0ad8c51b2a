"""The transformers backend: the model card's own way of loading and running the model.

``AutoImageProcessor`` and ``AutoModel`` with ``trust_remote_code=True`` (the repository's
own Python code runs) and ``use_infer_head=True`` (so the model returns probabilities),
classes from ``model.config.classes``, batched under ``torch.inference_mode()``, on CUDA
when it is available. Needs the ``torch`` extra: ``pip install 'imgutils-facequal[torch]'``.

``precision='bf16'`` (opt-in) runs each of the model's repeated blocks (timm's
``blocks.N`` modules) under ``torch.autocast`` in bfloat16, with their weights cast once,
and keeps the stem, the downsampling layers and the head in fp32. It is faster on CPUs
with AVX512-BF16 or AMX and on GPUs, and slower than fp32 on CPUs without them.
"""
import logging
import os
import re
import threading
from typing import TYPE_CHECKING, List, Optional, Sequence

from ..errors import BackendNotAvailableError, ModelNotAvailableError, install_hint
from ..models import ModelSource
from .base import FaceQualityClassifier

if TYPE_CHECKING:  # annotations only: torch is imported on first use
    import numpy as np
    import torch

__all__ = ['FaceQualityTransformersModel', 'require_torch_extra', 'TORCH_EXTRA', 'TRUST_REMOTE_CODE_ENV']

logger = logging.getLogger('imgutils_facequal')

_BLOCK_NAME = re.compile(r'(^|\.)blocks\.\d+$')

TORCH_EXTRA = install_hint('torch')


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
            f'installed. Install the torch extra: {TORCH_EXTRA}'
        )


#: ``0`` refuses to run a repository's own Python code (the transformers backend and ``export`` need it).
TRUST_REMOTE_CODE_ENV = 'IMGUTILS_FACEQUAL_TRUST_REMOTE_CODE'
_told_remote_code = set()


def _allow_remote_code(location: str, where: str) -> None:
    """Say once per repository that its Python code runs; refuse when ``IMGUTILS_FACEQUAL_TRUST_REMOTE_CODE=0``."""
    if os.environ.get(TRUST_REMOTE_CODE_ENV, '1').strip().lower() in ('0', 'false', 'no', 'off'):
        raise BackendNotAvailableError(
            f"{where}: the transformers backend runs the repository's own Python code (trust_remote_code), and "
            f"{TRUST_REMOTE_CODE_ENV}=0 refuses that. Use backend='onnx', or unset {TRUST_REMOTE_CODE_ENV} if you "
            f"trust {location!r}.")
    if location not in _told_remote_code:
        _told_remote_code.add(location)
        logger.warning("Running the Python code of %r (trust_remote_code), as its model card does; set %s=0 to "
                       "refuse repository code.", location, TRUST_REMOTE_CODE_ENV)


def _bf16_blocks(model) -> list:
    """The repeated blocks (``...blocks.N``, timm's name for them in MetaFormer, ViT and ConvNeXt
    models); converting the stem and the downsampling layers too moves probabilities twice as far."""
    return [name for name, _ in model.named_modules() if _BLOCK_NAME.search(name)]


class FaceQualityTransformersModel(FaceQualityClassifier):
    """A classifier loaded with transformers, as in the model card; ``model`` is the torch module."""

    backend = 'transformers'
    precisions = ('fp32', 'bf16')

    @classmethod
    def device_key(cls, device: Optional[str]) -> str:
        require_torch_extra()
        if device:
            return device
        import torch
        return 'cuda' if torch.cuda.is_available() else 'cpu'

    def __init__(self, source: ModelSource, device: str = 'cpu', precision: str = 'fp32'):
        require_torch_extra()
        from transformers import AutoImageProcessor, AutoModel

        self.source, self.device, self.precision = source, device, precision
        where = self.where
        location = source.local_dir if source.is_local else source.repo_id
        _allow_remote_code(location, where)
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
        if precision == 'bf16':
            self._run_blocks_in_bf16(where)
        classes = getattr(self.model.config, 'classes', None)
        if not classes:
            raise ModelNotAvailableError(f'{where}: model.config has no classes.')
        self.classes: List[str] = [str(name) for name in classes]
        self.stages = getattr(self.processor, 'to_dict', dict)().get('stages')
        self._lock = threading.Lock()
        self._check_loaded()

    def _run_blocks_in_bf16(self, where: str) -> None:
        import warnings

        import torch
        names = _bf16_blocks(self.model)
        if not names:
            raise ValueError(
                f"{where}: precision='bf16' runs a model's repeated blocks (modules named "
                f"'blocks.N') in bfloat16, and this model has none. Use precision='fp32'."
            )
        device_type = torch.device(self.device).type
        if device_type == 'cpu' and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            warnings.warn("precision='bf16': this CPU has no bfloat16 instructions (AVX512-BF16 or AMX), so "
                          "torch emulates them and bf16 runs slower than fp32. Use precision='fp32'.",
                          RuntimeWarning, stacklevel=7)
        modules = dict(self.model.named_modules())
        for name in names:
            block = modules[name]
            block.forward = _in_bf16(block.forward, device_type)
            # autocast would cast these weights to bf16 on every call; cast once instead (the
            # same values, and faster)
            for layer in block.modules():
                if isinstance(layer, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)):
                    for parameter in (layer.weight, layer.bias):
                        if parameter is not None:
                            parameter.data = parameter.data.to(torch.bfloat16)

    @property
    def preprocesses_in_workers(self) -> bool:
        # on a CPU, torch's preprocessing in other threads would start thread pools that fight the forward pass
        return self.runs_on_gpu

    def preprocess(self, images: Sequence) -> 'torch.Tensor':
        """Decoded RGB images to ``pixel_values`` through the repository's image processor."""
        return self.processor(list(images), return_tensors='pt')['pixel_values']

    def _forward(self, batch) -> 'np.ndarray':
        import torch
        batch = torch.as_tensor(batch)
        with self._lock, torch.inference_mode():
            output = self.model(batch.to(self.device))
        return getattr(output, 'logits', output).float().cpu().numpy()


def _in_bf16(forward, device_type: str):
    import torch

    def forward_in_bf16(*args, **kwargs):
        with torch.autocast(device_type, dtype=torch.bfloat16):
            return forward(*args, **kwargs).float()
    return forward_in_bf16
