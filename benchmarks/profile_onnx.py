"""Where the time of one ONNX classifier graph goes, by operator type (onnxruntime's profiler).

Usage::

    python benchmarks/profile_onnx.py MODEL.onnx [MORE.onnx ...] [--batch-size 2] [--runs 3]

Runs each graph on random 384 x 384 input with the session options of the ONNX backend
(all graph optimisations, one thread per CPU) and prints, per operator type, its share of
the kernel time and milliseconds per run. The performance page quotes it for the
published-style graph and the export that ``performance.py`` builds.
"""
import argparse
import collections
import json
import os
import time


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
    by_op = collections.Counter()
    for event in events:
        if event.get('cat') == 'Node' and event['name'].endswith('_kernel_time'):
            by_op[event['args']['op_name']] += event['dur']
    by_op = {op: micros / (runs + 1) / 1000 for op, micros in by_op.items()}  # the warm-up is profiled too
    return {'seconds_per_face_profiled': seconds_per_face, 'ms_per_run_by_op': by_op}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('models', nargs='+')
    parser.add_argument('--batch-size', type=int, default=2)
    parser.add_argument('--runs', type=int, default=3)
    args = parser.parse_args()
    for path in args.models:
        result = profile(path, args.batch_size, args.runs)
        total = sum(result['ms_per_run_by_op'].values())
        print(f"{path}: {result['seconds_per_face_profiled']:.3f} s per face while profiled, "
              f"batch {args.batch_size}")
        for op, ms in sorted(result['ms_per_run_by_op'].items(), key=lambda item: -item[1]):
            if ms >= 0.005 * total:
                print(f'  {op:<22} {100 * ms / total:5.1f}%  {ms:8.1f} ms per run')


if __name__ == '__main__':
    main()
