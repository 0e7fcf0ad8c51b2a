"""Reduced-precision variants of an fp32 ONNX classifier, and how far they move its scores.

Shared by ``performance.py`` (speed in the same run as the other paths) and
``quantization_check.py`` (agreement on any model and image folder, stage by stage).
A variant would ship only if it passes :data:`SHIP_BAR` against fp32.
"""
import os
import re
import statistics
import time

#: A variant ships as an opt-in only when all three hold against the fp32 graph.
SHIP_BAR = {'speedup': 1.3, 'top_class_agreement': 0.99, 'max_probability_difference': 0.02}


def _open_session(path: str):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])


def _input_name(session) -> str:
    names = [i.name for i in session.get_inputs()]
    return 'input' if 'input' in names else names[0]


def quantized_variants(fp32_path: str, work_dir: str, calibration_batches) -> dict:
    """The int8 variants of ``fp32_path`` (written under ``work_dir``), by name.

    ``reduce_range`` (7-bit weights) is onnxruntime's advice for CPUs without VNNI, whose
    u8 x s8 instructions can saturate their 16-bit intermediate sums.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, \
        quantize_static
    os.makedirs(work_dir, exist_ok=True)
    variants = {}

    def dynamic(name, filename, **options):
        target = os.path.join(work_dir, filename)
        quantize_dynamic(fp32_path, target, op_types_to_quantize=['MatMul', 'Gemm'], weight_type=QuantType.QInt8,
                         **options)
        variants[name] = target

    dynamic('int8 dynamic, MatMul/Gemm', 'int8-matmul.onnx')
    dynamic('int8 dynamic, MatMul/Gemm, per channel, 7-bit weights', 'int8-matmul-per-channel-7bit.onnx',
            per_channel=True, reduce_range=True)
    dynamic('int8 dynamic, weight MatMuls only, per channel', 'int8-matmul-constb-per-channel.onnx',
            per_channel=True, extra_options={'MatMulConstBOnly': True})

    import onnx
    graph = onnx.load(fp32_path, load_external_data=False).graph
    dynamic('int8 dynamic, per channel, only the MatMuls a layer norm feeds (qkv, fc1, 1 x 1 conv 1)',
            'int8-matmul-after-layer-norm.onnx', per_channel=True, nodes_to_quantize=matmuls_after_layer_norm(graph))
    inputs = [i.name for i in graph.input]
    name = 'input' if 'input' in inputs else inputs[0]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter({name: batch} for batch in calibration_batches)

        def get_next(self):
            return next(self.items, None)

    target = os.path.join(work_dir, 'int8-static-qdq.onnx')
    quantize_static(fp32_path, target, Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=['MatMul', 'Conv'],
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                    reduce_range=True)
    variants['int8 static QDQ, MatMul+Conv, per channel, 7-bit weights (calibrated)'] = target
    return variants


def matmuls_after_layer_norm(graph) -> list:
    """Names of the MatMuls whose input a LayerNormalization writes.

    Layer-norm outputs are the best-behaved activations of a MetaFormer block; the other
    MatMuls read StarReLU's heavy-tailed ``relu(x)^2`` or the attention's output.
    """
    normalised = {output for node in graph.node if node.op_type == 'LayerNormalization' for output in node.output}
    return [node.name for node in graph.node if node.op_type == 'MatMul' and node.input[0] in normalised]


def stage_of(node_name: str) -> str:
    """``stage 0`` ... for a node inside a MetaFormer stage, else ``stem and head``."""
    found = re.search(r'stages\.(\d+)', node_name)
    return f'stage {found.group(1)}' if found else 'stem and head'


def stage_variants(fp32_path: str, work_dir: str) -> dict:
    """One dynamic int8 variant (per channel, 7-bit weights) per stage, the rest left fp32.

    Stages come from the node names torch's exporter writes (``.../stages.2/...``).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    os.makedirs(work_dir, exist_ok=True)
    model = onnx.load(fp32_path, load_external_data=False)
    groups = {}
    for node in model.graph.node:
        if node.op_type == 'MatMul':  # dynamic quantisation has no integer Gemm: Gemms stay fp32
            groups.setdefault(stage_of(node.name), []).append(node.name)
    variants = {}
    for group, names in sorted(groups.items()):
        target = os.path.join(work_dir, f"int8-{group.replace(' ', '-')}.onnx")
        quantize_dynamic(fp32_path, target, op_types_to_quantize=['MatMul'], weight_type=QuantType.QInt8,
                         per_channel=True, reduce_range=True, nodes_to_quantize=names)
        variants[f'{group} only ({len(names)} MatMul)'] = target
    return variants


def batches_of(model, images, size=8):
    """``images`` preprocessed by a loaded face-quality model, ``size`` to an array."""
    import numpy as np
    return [np.concatenate([model.preprocess([image]) for image in images[i:i + size]])
            for i in range(0, len(images), size)]


def probabilities(path: str, batches) -> 'object':
    import numpy as np
    from imgutils_facequal.graphs.check import probabilities_from_output
    session = _open_session(path)
    name = _input_name(session)
    return np.concatenate([probabilities_from_output(session.run(None, {name: batch})[0]) for batch in batches])


def top_two_gaps(probabilities):
    """Per image, how far apart its two most likely classes are, in log-probability."""
    import numpy as np
    top_two = np.sort(np.log(np.clip(probabilities, 1e-38, None)), axis=1)[:, -2:]
    return top_two[:, 1] - top_two[:, 0]


def agreement(outputs, reference) -> dict:
    """How far ``outputs`` (probabilities, one row per image) are from the fp32 ``reference``.

    ``moved_top_two_gap_max`` is the widest fp32 top-two gap among the images moved by
    more than 0.02: how close to a tie an image must be for the variant to move it.
    """
    import numpy as np
    moves = np.abs(outputs - reference).max(axis=1)
    moved = moves > SHIP_BAR['max_probability_difference']
    return {'top_class_agreement': float(np.mean(outputs.argmax(1) == reference.argmax(1))),
            'max_probability_difference': float(moves.max()),
            'share_within_0_02': float(np.mean(~moved)),
            'moved_top_two_gap_max': float(top_two_gaps(reference)[moved].max()) if moved.any() else None}


def alternating_seconds_per_face(calls: dict, faces: int, rounds: int) -> dict:
    """Median seconds per face of each call (one forward pass over ``faces`` crops), the calls
    alternating call by call after one warm-up each."""
    for call in calls.values():
        call()
    times = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) / faces for name, values in times.items()}


def seconds_per_face(paths: dict, batch, rounds: int) -> dict:
    """Median seconds per face of each graph on ``batch``, the graphs alternating call by call."""
    sessions = {name: _open_session(path) for name, path in paths.items()}
    calls = {name: (lambda session=session: session.run(None, {_input_name(session): batch}))
             for name, session in sessions.items()}
    return alternating_seconds_per_face(calls, len(batch), rounds)


def ships(row: dict) -> bool:
    return (row['speedup'] >= SHIP_BAR['speedup'] and row['top_class_agreement'] >= SHIP_BAR['top_class_agreement']
            and row['max_probability_difference'] <= SHIP_BAR['max_probability_difference'])


def confidence(reference) -> dict:
    """How decided the fp32 model is: the gap between its top two log-probabilities."""
    import numpy as np
    gaps = top_two_gaps(reference)
    return {'top_two_log_probability_gap_percentiles': {str(p): float(np.percentile(gaps, p)) for p in (10, 50, 90)},
            'share_top_probability_over_0_999': float(np.mean(reference.max(axis=1) > 0.999))}


def add_model_arguments(parser, images_help: str) -> None:
    """``--model`` and ``--images``, as the re-checks on your own model and crops take them."""
    parser.add_argument('--model', default=None, help="model name, repository or folder (default: the benchmark's "
                                                      'random caformer_s36, offline)')
    parser.add_argument('--images', default=None, help=images_help)


def offline_model(published: bool = False) -> str:
    """The benchmark's random caformer_s36, served offline: its export, or its published-style
    ``model.onnx`` when ``published``."""
    from benchmarks import _fixtures  # offline environment, set before huggingface_hub is imported
    _fixtures.build_hub()
    _fixtures.ensure_export()
    return _fixtures.CAFORMER_REPO if published else _fixtures.CAFORMER_NO_ONNX_REPO


def load_crops(directory: str):
    """The face crops in ``directory``, decoded to RGB, for scoring as they are."""
    from imgutils.data import load_image
    from imgutils_facequal.pipeline import find_images
    found = find_images([directory])
    if not found:
        raise SystemExit(f'--images {directory!r}: no images found; give a folder of face crops.')
    return [load_image(item.path, mode='RGB', force_background='white') for item in found]
