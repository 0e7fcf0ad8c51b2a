"""The OpenVINO backend: Intel's OpenVINO on the repository's ``model.onnx``, on the CPU, torch-free.

Opt-in, with the ``openvino`` extra: ``pip install 'imgutils-facequal[openvino]'``.

* It reads the same ``model.onnx`` as the ONNX backend (or a local export of it) and runs
  it rewritten for OpenVINO (``graphs.onnx_rewrites.OPENVINO_REWRITES``), checked against
  the original and cached like the ONNX backend's rewrite.
  ``IMGUTILS_FACEQUAL_REWRITE_ONNX=0`` turns the rewrite off.
* Each crop is its own inference request, and OpenVINO runs as many at once as it has CPU
  streams. Crops left over when a batch is not a multiple of the streams run one at a
  time on a second compilation that gives every core to one request.
* It runs fp32, pinned (OpenVINO's own default on AMX CPUs is whole-graph bf16, which
  moves probabilities too far). ``precision='bf16'`` runs only the matrix products and
  convolutions of the blocks of the first two stages (`BF16_PRODUCTS`) in bf16, through
  explicit conversions; it needs a CPU with AVX512-BF16 or AMX and a graph with timm's
  MetaFormer stage names.
* The package's own exports need OpenVINO 2026.3 or later (their fused attention is
  onnxruntime's ``com.microsoft.MultiHeadAttention``); earlier versions read the published
  graphs, and stop on an export with a message saying to upgrade.
"""
import threading
import warnings
from typing import TYPE_CHECKING, Dict, Optional

from ..errors import BackendNotAvailableError, ModelNotAvailableError, install_hint
from ..graphs.cache import choose_graph
from ..graphs.check import check_images
from ..hub import fetch_model_file
from ..models import ModelSource
from ..sessions import open_onnx_session, session_threads
from .base import FaceQualityClassifier
from .onnx import FaceQualityOnnxModel, read_classes

if TYPE_CHECKING:  # annotations only: numpy is imported on first use
    import numpy as np

__all__ = ['FaceQualityOpenVINOModel', 'require_openvino_extra', 'products_in_bf16', 'BF16_PRODUCTS']

_OPENVINO_EXTRA = install_hint('openvino')
_OPENVINO_FOR_FUSED_OPERATORS = '2026.3'  # com.microsoft.MultiHeadAttention, in the package's exports
#: The products ``precision='bf16'`` runs in bf16: those of the blocks of stages 0 and 1
#: (timm's MetaFormer node names), the only part whose bf16 kept to the agreement bar.
BF16_PRODUCTS = r'/stages\.[01]/blocks/'


def require_openvino_extra():
    """Import openvino, or say which extra installs it."""
    try:
        import openvino
    except ImportError as err:
        raise BackendNotAvailableError(
            f"backend='openvino' needs the openvino package, which is not installed. "
            f"Install the openvino extra: {_OPENVINO_EXTRA}"
        ) from err
    return openvino


def _read_model(core, path: str, where: str):
    """``core.read_model(path)``, with errors that say what to do."""
    import openvino
    try:
        return core.read_model(path)
    except Exception as err:
        if 'com.microsoft.' in str(err):
            raise BackendNotAvailableError(
                f'{where}: OpenVINO {openvino.__version__} cannot read {path!r}: it uses '
                f"onnxruntime's fused operators (the package's own export does), which OpenVINO reads from "
                f"{_OPENVINO_FOR_FUSED_OPERATORS} on. Upgrade it: pip install -U "
                f"'openvino>={_OPENVINO_FOR_FUSED_OPERATORS}'"
            ) from err
        raise ModelNotAvailableError(
            f'{where}: OpenVINO cannot read {path!r}: {err}. The file may be corrupt: delete it (from '
            f'the Hugging Face cache, or the rewritten folder of IMGUTILS_FACEQUAL_HOME) and load again.'
        ) from err


def products_in_bf16(model) -> int:
    """Feed bf16 to the matrix products and convolutions of an OpenVINO ``model`` named like
    `BF16_PRODUCTS`, converting their results back to fp32, in place; returns how many.

    Compiled with an fp32 inference precision, only those products then run in bf16 (on
    AMX or AVX512-BF16), as torch's autocast would run them.
    """
    return _products_in_bf16_named(model, BF16_PRODUCTS)


def _products_in_bf16_named(model, pattern: str) -> int:
    # the opt-in's set is BF16_PRODUCTS; benchmarks/experiments/openvino_precision.py studies others
    import re

    import openvino
    try:
        from openvino import opset13 as ops
    except ImportError:  # OpenVINO before 2024.2
        from openvino.runtime import opset13 as ops
    converted = 0
    for node in list(model.get_ordered_ops()):
        if node.get_type_name() not in ('MatMul', 'Convolution'):
            continue
        if not re.search(pattern, node.get_friendly_name()):
            continue
        for port in node.inputs():
            source = port.get_source_output()
            if source.get_element_type() == openvino.Type.f32:
                port.replace_source_output(ops.convert(source, 'bf16').output(0))
        consumers = list(node.output(0).get_target_inputs())
        node.validate_and_infer_types()
        back = ops.convert(node.output(0), 'f32').output(0)
        for consumer in consumers:
            consumer.replace_source_output(back)
        converted += 1
    if converted:
        model.validate_nodes_and_infer_types()
    return converted


class FaceQualityOpenVINOModel(FaceQualityClassifier):
    """A classifier compiled by OpenVINO for the CPU.

    Forward passes take turns: each already uses every core. ``onnx_path`` is the model's
    ONNX file, ``run_path`` the one it compiled (``onnx_path`` or its checked rewrite,
    ``graph_rewrites`` saying what changed), ``requests`` how many crops OpenVINO scores at
    once, ``bf16_products`` how many products run in bf16 (``precision='bf16'``).
    """

    backend = 'openvino'
    precisions = ('fp32', 'bf16')
    files_source = FaceQualityOnnxModel.files_source

    @classmethod
    def device_key(cls, device: Optional[str]) -> str:
        if device not in (None, 'cpu'):
            raise ValueError(f"backend='openvino' runs on the CPU; got device={device!r}. For a GPU use "
                             f"backend='onnx' with onnxruntime-gpu, or backend='transformers'.")
        return 'cpu'

    def __init__(self, source: ModelSource, device: str = 'cpu', precision: str = 'fp32'):
        openvino = require_openvino_extra()
        self.source, self.device, self.precision = source, device, precision
        where = self.where
        self.onnx_path = fetch_model_file(
            source, 'model.onnx',
            missing_hint="The exporter skips model.onnx when the export is not a single file. Make a local "
                         "ONNX copy once with export_onnx(model_name) and use it as before.",
        )
        self._read_stages()

        core = openvino.Core()
        graph = choose_graph(self.onnx_path, 'openvino', lambda path: open_onnx_session(path, 'cpu', where),
                             lambda: self.preprocess(check_images()))
        self.run_path, self.graph_rewrites, self.graph_note = graph.path, graph.rewrites, graph.note
        try:
            model = _read_model(core, self.run_path, where)
        except ModelNotAvailableError as err:
            if self.run_path == self.onnx_path:
                raise
            warnings.warn(f'{err} Running the original graph {self.onnx_path!r} meanwhile.', RuntimeWarning,
                          stacklevel=2)
            self.run_path, self.graph_rewrites = self.onnx_path, []
            self.graph_note = 'the original graph: OpenVINO could not read its rewrite'
            model = _read_model(core, self.run_path, where)
        inputs, outputs = model.inputs, model.outputs
        model_input = next((i for i in inputs if i.get_any_name() == 'input'), inputs[0])
        self._input_name = model_input.get_any_name()
        self._output_index = next((n for n, o in enumerate(outputs) if o.get_any_name() == 'output'), 0)
        metadata = model.get_rt_info(['framework']).astype(dict) if model.has_rt_info(['framework']) else {}
        self.classes, self.classes_from = read_classes(source, {k: v.astype(str) for k, v in metadata.items()})
        # one crop per request: fixed shapes compile to faster kernels, and requests run side by side
        shape = model_input.get_partial_shape()  # indexed one by one: OpenVINO 2024 takes no slices
        model.reshape({self._input_name: openvino.PartialShape([1] + [shape[i] for i in range(1, len(shape))])})
        #: How many matrix products and convolutions run in bf16 (``precision='bf16'``).
        self.bf16_products = 0
        if precision == 'bf16':
            self.bf16_products = products_in_bf16(model)
            if not self.bf16_products:
                raise ValueError(
                    f"{where}: precision='bf16' with backend='openvino' runs the matrix products of the first two "
                    f"stages' blocks in bf16, and this graph has none (no MatMul or Convolution named like "
                    f"{BF16_PRODUCTS!r}, as timm's MetaFormer models export them). Use precision='fp32'."
                )
        if precision == 'bf16' and 'BF16' not in core.get_property('CPU', 'OPTIMIZATION_CAPABILITIES'):
            raise ValueError(
                f"precision='bf16' with backend='openvino' needs a CPU with bfloat16 instructions "
                f"(AVX512-BF16 or AMX), and this one ({core.get_property('CPU', 'FULL_DEVICE_NAME')}) has "
                f"none: OpenVINO would run fp32. Use precision='fp32'."
            )
        self._core, self._model = core, model
        self.compiled = self._compile('THROUGHPUT')
        #: Crops scored at once (OpenVINO's CPU streams); batches are best a multiple of it.
        self.requests = int(self.compiled.get_property('OPTIMAL_NUMBER_OF_INFER_REQUESTS'))
        self._queue = openvino.AsyncInferQueue(self.compiled, self.requests)
        self._queue.set_callback(self._keep_output)
        self._outputs: Dict[int, 'np.ndarray'] = {}
        self._single_request = None  # every core on one crop, for the crops left over
        self._lock = threading.Lock()
        sides = [shape[i] for i in range(2, len(shape))]
        self._check_loaded(tuple(side.get_length() for side in sides) if all(side.is_static for side in sides)
                           else None, images=self.requests)  # a full wave of requests: no second compilation

    def _compile(self, hint: str):
        # pinned to fp32 (AMX CPUs default to whole-graph bf16); the bf16 opt-in converts its products explicitly.
        # Threads not pinned to cores: each process pins from the first core, so two processes of one thread
        # each (as Ray gives actors of one CPU) shared one core at half speed; unpinned, one alone runs as fast.
        return self._core.compile_model(self._model, 'CPU', {'INFERENCE_PRECISION_HINT': 'f32',
                                                             'INFERENCE_NUM_THREADS': session_threads(),
                                                             'PERFORMANCE_HINT': hint,
                                                             'ENABLE_CPU_PINNING': False})

    def _keep_output(self, request, index: int) -> None:
        self._outputs[index] = request.get_output_tensor(self._output_index).data.copy()

    @property
    def default_batch_size(self) -> int:
        """At least as many crops as OpenVINO scores at once."""
        return max(super().default_batch_size, self.requests)

    def _forward(self, batch) -> 'np.ndarray':
        import numpy as np
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        side_by_side = len(batch) - len(batch) % self.requests if self.requests > 1 else len(batch)
        with self._lock:
            self._outputs.clear()
            for index in range(side_by_side):
                self._queue.start_async({0: batch[index:index + 1]}, index)
            self._queue.wait_all()
            rows = [self._outputs[index] for index in range(side_by_side)]
            for index in range(side_by_side, len(batch)):
                if self._single_request is None:
                    self._single_request = self._compile('LATENCY').create_infer_request()
                output = self._single_request.infer({0: batch[index:index + 1]})
                rows.append(output.to_tuple()[self._output_index].copy())
        return np.concatenate(rows) if rows else np.zeros((0, len(self.classes)), dtype=np.float32)
