"""The ONNX backend (the default): onnxruntime on the repository's ``model.onnx``, no torch.

Sessions are opened with imgutils' ``open_onnx_model``, so ``ONNX_MODE`` (``cpu``, ``gpu``,
...) picks the execution provider exactly as in imgutils; ``device='cuda'`` or ``'cpu'``
picks it too. A local export of the model (see `imgutils_facequal.export_onnx`) is
used instead of the repository's file when there is one. Published graphs are rewritten
once for speed, checked and cached (`imgutils_facequal.graphs.cache`).
onnxruntime's ``run`` is safe to call from many threads at once.
"""
import json
import os
from typing import Dict, List, Optional, Tuple

from ..errors import ModelNotAvailableError
from ..graphs.cache import choose_graph
from ..graphs.check import check_images
from ..home import exported_source
from ..hub import fetch_model_file, read_json_file
from ..models import ModelSource
from ..sessions import open_onnx_session
from .base import FaceQualityClassifier

__all__ = ['FaceQualityOnnxModel', 'read_classes', 'NO_ONNX_HINT']

#: What to do about a repository without ``model.onnx``.
NO_ONNX_HINT = ("The exporter skips model.onnx when the export is not a single file. Use backend='transformers' "
                "(or 'auto'), which needs the torch extra and runs the repository's own Python code "
                "(trust_remote_code), or make a local ONNX copy once with export_onnx(model_name) (the same "
                "code runs once, for the export) and use it as before.")


def _classes_from_metadata(metadata: Dict[str, str]) -> Optional[List[str]]:
    raw = metadata.get('classes')
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, list) else None


def read_classes(source: ModelSource, metadata: Dict[str, str]) -> Tuple[List[str], str]:
    """Class names, from the ONNX file's metadata, else config.json, else meta.json; and where they came from."""
    classes = _classes_from_metadata(metadata)
    if classes:
        return [str(c) for c in classes], 'model.onnx metadata'
    config = read_json_file(source, 'config.json', required=False) or {}
    classes = (config.get('task_config') or {}).get('classes') or config.get('classes')
    if classes:
        return [str(c) for c in classes], 'config.json'
    meta = read_json_file(source, 'meta.json', required=False) or {}
    classes = meta.get('classes')
    if classes:
        return [str(c) for c in classes], 'meta.json'
    raise ModelNotAvailableError(
        f'Model {source.model_name!r} ({source.location}): no class names found in the ONNX '
        f'metadata "classes", config.json "task_config.classes" or meta.json "classes" '
        f'(offline, those files may just not be cached). Use a repository in the published layout.'
    )


class FaceQualityOnnxModel(FaceQualityClassifier):
    """A classifier run by onnxruntime.

    ``onnx_path`` is the model's ONNX file (from the hub cache, a local directory, or an
    export); ``run_path`` the file the ``session`` runs, ``onnx_path`` itself or its rewrite
    for onnxruntime (``graph_rewrites`` lists what changed, ``graph_note`` why).
    ``device`` is onnxruntime's execution provider.
    """

    backend = 'onnx'

    @classmethod
    def device_key(cls, device: Optional[str]) -> str:
        from imgutils.utils import get_onnx_provider
        if device is not None and device.startswith('cuda'):
            device = 'gpu'
        return get_onnx_provider(device or os.environ.get('ONNX_MODE', None))

    @classmethod
    def files_source(cls, source: ModelSource) -> ModelSource:
        return exported_source(source) or source

    def __init__(self, source: ModelSource, device: str, precision: str = 'fp32'):
        self.source, self.device, self.precision = source, device, precision
        self.onnx_path = fetch_model_file(source, 'model.onnx', missing_hint=NO_ONNX_HINT)
        self._read_stages()
        graph = choose_graph(self.onnx_path, device, lambda path: open_onnx_session(path, 'cpu', self.where),
                             lambda: self.preprocess(check_images()))
        self.run_path, self.graph_rewrites, self.graph_note = graph.path, graph.rewrites, graph.note
        self.session = graph.session or open_onnx_session(graph.path, device, self.where)
        inputs = self.session.get_inputs()
        outputs = self.session.get_outputs()
        self.input_name = next((i.name for i in inputs if i.name == 'input'), inputs[0].name)
        self.output_name = next((o.name for o in outputs if o.name == 'output'), outputs[0].name)
        self.classes, self.classes_from = read_classes(source, self.session.get_modelmeta().custom_metadata_map)
        shape = next(i.shape for i in inputs if i.name == self.input_name)
        self._check_loaded(tuple(shape[2:]) if len(shape) == 4 and all(isinstance(v, int) for v in shape[2:]) else None)

    @property
    def runs_on_gpu(self) -> bool:
        return self.session.get_providers()[0] != 'CPUExecutionProvider'

    def _forward(self, batch):
        return self.session.run([self.output_name], {self.input_name: batch})[0]
