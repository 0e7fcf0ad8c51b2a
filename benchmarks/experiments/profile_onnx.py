"""Where the time of one ONNX classifier graph goes, by operator type (onnxruntime's profiler).

Usage::

    python -m benchmarks.experiments.profile_onnx MODEL.onnx [MORE.onnx ...] [--batch-size 2] [--runs 3]

Runs each graph on random 384 x 384 input with the session options of the ONNX backend
(all graph optimisations, one thread per CPU) and prints, per operator type, its share of
the kernel time and milliseconds per run, and how much of it the products take (see
``products_ceiling``). It then prints the rate of the MatMuls in each stage, in GFLOP/s,
to set against the machine's fp32 matmul peak: a stage at the peak has nothing left to
gain in fp32. ``classifier_variants`` uses ``products_ceiling`` for its
classifier-stage ceiling.
"""
import argparse
import collections
import json
import math
import os
import time

from benchmarks._quantize import stage_of


def profile(path: str, batch_size: int, runs: int) -> dict:
    import numpy as np
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = os.cpu_count()
    options.enable_profiling = True
    session = ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
    feed = {session.get_inputs()[0].name: np.random.rand(batch_size, 3, 384, 384).astype(np.float32)}
    session.run(None, feed)  # warm-up, left out below
    started = time.perf_counter()
    for _ in range(runs):
        session.run(None, feed)
    seconds_per_face = (time.perf_counter() - started) / runs / batch_size
    trace = session.end_profiling()
    with open(trace) as f:
        events = json.load(f)
    os.remove(trace)
    weight_shapes = _matmul_weight_shapes(path)
    by_op, by_kind = collections.Counter(), collections.Counter()
    matmul_micros, matmul_flops = collections.Counter(), collections.Counter()
    for event in events:
        if event.get('cat') == 'Node' and event['name'].endswith('_kernel_time'):
            op, node = event['args']['op_name'], event['name'][:-len('_kernel_time')]
            by_op[op] += event['dur']
            by_kind[kernel_kind(op, event['name'])] += event['dur']
            if node in weight_shapes:
                stage = stage_of(node)
                matmul_micros[stage] += event['dur']
                activation = list(event['args']['input_type_shape'][0].values())[0]
                rows, depth, columns = math.prod(activation[:-1]), activation[-1], weight_shapes[node][-1]
                matmul_flops[stage] += 2 * rows * depth * columns
    per_run = 1 / (runs + 1) / 1000  # the warm-up is profiled too
    return {'seconds_per_face_profiled': seconds_per_face,
            'ms_per_run_by_op': {op: micros * per_run for op, micros in by_op.items()},
            'ms_per_run_by_kind': {kind: micros * per_run for kind, micros in by_kind.items()},
            'matmul_gflops_per_second_by_stage': {stage: matmul_flops[stage] / micros / 1000
                                                  for stage, micros in sorted(matmul_micros.items())}}


def _matmul_weight_shapes(path: str) -> dict:
    """The weight's shape of each MatMul whose second input is a constant, by node name."""
    import onnx
    graph = onnx.load(path, load_external_data=False).graph
    shapes = {tensor.name: list(tensor.dims) for tensor in graph.initializer}
    return {node.name: shapes[node.input[1]] for node in graph.node
            if node.op_type in ('MatMul', 'FusedMatMul') and node.input[1] in shapes}


#: Kernels that do the multiply-adds counted in the model's FLOPs: the matrix products
#: (linear layers, 1 x 1 convolutions), attention, and the dense convolutions (stem, downsampling).
PRODUCT_OPS = ('MatMul', 'FusedMatMul', 'Gemm', 'FusedGemm', 'MultiHeadAttention', 'Attention')


def kernel_kind(op_type: str, node_name: str) -> str:
    """'products' for the kernels above and the dense convolutions, 'other' for the rest:
    layer norms, depthwise convolutions, element-wise arithmetic and layout changes."""
    if op_type in PRODUCT_OPS or (op_type == 'Conv' and 'dwconv' not in node_name):
        return 'products'
    return 'other'


def products_ceiling(result: dict) -> dict:
    """The products' share of the kernel time, and their seconds per face at the measured speed.

    If every other kernel took no time, the graph could not run faster than its products:
    ``products_seconds_per_face`` is that bound, as onnxruntime's kernels run them."""
    kinds = result['ms_per_run_by_kind']
    share = kinds.get('products', 0.0) / sum(kinds.values())
    return {'products_share_of_kernel_time': share,
            'products_seconds_per_face': share * result['seconds_per_face_profiled']}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('models', nargs='+')
    parser.add_argument('--batch-size', type=int, default=2)
    parser.add_argument('--runs', type=int, default=3)
    args = parser.parse_args()
    for path in args.models:
        result = profile(path, args.batch_size, args.runs)
        total = sum(result['ms_per_run_by_op'].values())
        ceiling = products_ceiling(result)
        print(f"{path}: {result['seconds_per_face_profiled']:.3f} s per face while profiled, "
              f"batch {args.batch_size}; products (matrix products, attention, dense convolutions) "
              f"{100 * ceiling['products_share_of_kernel_time']:.0f}% of the kernel time, "
              f"{ceiling['products_seconds_per_face']:.3f} s per face")
        for op, ms in sorted(result['ms_per_run_by_op'].items(), key=lambda item: -item[1]):
            if ms >= 0.005 * total:
                print(f'  {op:<22} {100 * ms / total:5.1f}%  {ms:8.1f} ms per run')
        print('  MatMuls with a constant weight, by stage:', ', '.join(
            f'{stage} {rate:.0f} GFLOP/s' for stage, rate in result['matmul_gflops_per_second_by_stage'].items()))


if __name__ == '__main__':
    main()
