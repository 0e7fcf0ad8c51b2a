"""The classifier stage in fp32 on every CPU runtime at hand, against the matmul peak.

The performance page asks whether any runtime brings caformer_s36's fp32 forward pass
closer to the machine's matmul peak than onnxruntime does. This runs, in one process,
alternating call by call with a 4096 x 4096 matmul in numpy and in onnxruntime (each call
after a short rest, so no runtime's spinning threads slow the next):

* onnxruntime on the published-style graph rewritten at load (the default path);
* OpenVINO on the same ``model.onnx``, rewritten for OpenVINO as the openvino backend runs
  it: the backend (a request per crop, side by side on the CPU streams), and one request
  of the whole batch (latency hint);
* torch on the same architecture: eager, and ``torch.compile`` (inductor) with frozen,
  pre-packed weights, plain and with ``mode='max-autotune'``.

Every runtime gets the same batch of 2 crops. Shares are of the faster matmul of the same
round, on the card's 44.3 GFLOP per face. Needs the torch and openvino extras and a C++
compiler (for inductor); compiling takes a minute or two.

Usage::

    python -m benchmarks.experiments.fp32_runtimes [--rounds 7] [--batch-size 2]

Writes ``benchmarks/results/fp32_runtimes.json`` and ``fp32_runtimes.md``.
"""
import argparse
import os
import statistics
import time

from benchmarks import _fixtures
from benchmarks._results import write_results
from benchmarks.experiments.classifier_variants import GFLOP_PER_FACE, PAUSE_BEFORE_CALL, PUBLISHED_MODEL, RESULTS, STAGE_MATMUL_SIZE, matmul_calls


def openvino_whole_batch(batch, onnx_path: str):
    """OpenVINO with the batch as one request, compiled for its shape (the latency hint)."""
    import openvino
    core = openvino.Core()
    model = core.read_model(onnx_path)
    model.reshape({model.inputs[0].get_any_name(): list(batch.shape)})
    compiled = core.compile_model(model, 'CPU', {'INFERENCE_PRECISION_HINT': 'f32', 'PERFORMANCE_HINT': 'LATENCY'})
    request = compiled.create_infer_request()
    return lambda: request.infer({0: batch})


def torch_runners(batch):
    """caformer_s36 in torch (random weights; speed does not depend on them): eager and compiled."""
    import timm
    import torch
    import torch._inductor.config as inductor
    inductor.freezing = True  # weights as constants, pre-packed for oneDNN, folded where they can be
    model = timm.create_model('caformer_s36', num_classes=4).eval()
    x = torch.as_tensor(batch)
    compiled = {'torch.compile (inductor, frozen weights)': torch.compile(model),
                "torch.compile (inductor, frozen weights, mode='max-autotune')": torch.compile(model,
                                                                                             mode='max-autotune')}
    runners = {'torch eager': model, **compiled}
    compile_seconds = {}
    for name, module in compiled.items():
        started = time.perf_counter()
        with torch.inference_mode():
            module(x)
        compile_seconds[name] = time.perf_counter() - started

    def call(module):
        def run():
            with torch.inference_mode():
                return module(x)
        return run
    return {name: call(module) for name, module in runners.items()}, compile_seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=7)
    parser.add_argument('--batch-size', type=int, default=2)
    args = parser.parse_args()
    import numpy as np
    from importlib.metadata import version
    from imgutils_facequal import load_face_quality_model
    _fixtures.build_hub()
    batch = np.random.default_rng(0).random((args.batch_size, 3, 384, 384), dtype=np.float32)
    default = load_face_quality_model(PUBLISHED_MODEL)
    openvino_backend = load_face_quality_model(PUBLISHED_MODEL, backend='openvino')
    runners = {'onnxruntime, rewritten at load (the default path)': lambda: default.predict(batch),
               'OpenVINO, the batch as one request': openvino_whole_batch(batch, openvino_backend.run_path),
               f"OpenVINO, backend='openvino' ({openvino_backend.requests} requests side by side)":
                   lambda: openvino_backend.predict(batch)}
    torch_calls, compile_seconds = torch_runners(batch)
    runners.update(torch_calls)
    peaks = {f'matmul_{runtime}': call for runtime, call in matmul_calls(STAGE_MATMUL_SIZE).items()}
    calls = {**runners, **peaks}
    times = {name: [] for name in calls}
    for call in calls.values():
        call()
    for _ in range(args.rounds):
        for name, call in calls.items():
            time.sleep(PAUSE_BEFORE_CALL)
            started = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - started)
    flops = 2 * STAGE_MATMUL_SIZE ** 3
    peak_by_round = [flops / min(numpy, ort) / 1e9 for numpy, ort in zip(times['matmul_numpy'],
                                                                          times['matmul_onnxruntime'])]
    report = {'batch_size': args.batch_size, 'rounds': args.rounds, 'cpus': os.cpu_count(),
              'versions': {name: version(name) for name in ('onnxruntime', 'openvino', 'torch')},
              'compile_seconds': compile_seconds, 'openvino_rewrites': openvino_backend.graph_rewrites,
              'matmul_gflops': {runtime: flops / statistics.median(times[f'matmul_{runtime}']) / 1e9
                                for runtime in ('numpy', 'onnxruntime')},
              'runtimes': {}}
    for name in runners:
        per_face = [seconds / args.batch_size for seconds in times[name]]
        report['runtimes'][name] = {
            'seconds_per_face': statistics.median(per_face),
            'share_of_peak': statistics.median(GFLOP_PER_FACE / s / p for s, p in zip(per_face, peak_by_round)),
            'speedup_vs_default': statistics.median(d / s for d, s in zip(
                times['onnxruntime, rewritten at load (the default path)'], times[name]))}
    write_results(RESULTS, 'fp32_runtimes', report, markdown(report))


def markdown(report) -> str:
    matmul = report['matmul_gflops']
    lines = [f"fp32, batch {report['batch_size']}, {report['cpus']} CPUs, medians of {report['rounds']} rounds "
             f"(onnxruntime {report['versions']['onnxruntime']}, OpenVINO {report['versions']['openvino']}, torch "
             f"{report['versions']['torch']}); matmul alongside: numpy {matmul['numpy']:.0f}, onnxruntime "
             f"{matmul['onnxruntime']:.0f} GFLOP/s.", '',
             '| runtime | s per face | share of the peak (card\'s FLOPs) | speed-up vs the default path |',
             '|---|---|---|---|']
    for name, row in report['runtimes'].items():
        lines.append(f"| {name} | {row['seconds_per_face']:.3f} | {100 * row['share_of_peak']:.0f}% | "
                     f"{row['speedup_vs_default']:.2f}x |")
    if report.get('openvino_rewrites'):
        rewrites = ', '.join(report['openvino_rewrites'])
        lines += ['', f"Both OpenVINO rows run the graph rewritten for OpenVINO ({rewrites})."]
    lines += ['', 'Compiling took ' + ', '.join(f'{seconds:.0f} s ({name})'
                                                for name, seconds in report['compile_seconds'].items()) + '.']
    return '\n'.join(lines) + '\n'


if __name__ == '__main__':
    main()
