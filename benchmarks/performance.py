"""One reproducible performance run: the model card's way against this package's paths.

Built on the published architecture (timm caformer_s36, 4 classes, 384 x 384, random
weights) in the published layout, exported to ONNX by the project's own ``export_onnx``,
served offline; imgutils' real detector code runs on the tests' tiny detectors, so the
classifier is the cost being measured. In one run, on the same images, crops and weights:

1. the model card's way: transformers processor and model, one face crop at a time;
2. this package's default path: ``detect_face_quality`` per image on the published-style
   ``model.onnx`` (what a user gets without doing anything);
3. the same call after ``imgutils-facequal export`` (the exact MetaFormer rewrites), and
   the folder pipeline on that export;
4. reduced-precision variants of the exported graph, with their agreement with fp32.

It also measures the machine's fp32 matmul peak, the classifier's achieved GFLOP/s, the
import time, the time from process start to the first result of the CLI, and peak memory
by batch size. Times are medians of several interleaved rounds; ratios come from this run.

Usage::

    python benchmarks/performance.py [--rounds 3] [--base-venv /tmp/facequal-base]

``--base-venv`` names a virtual environment with the package installed *without* the
torch extra (created there if missing), for the start-up figures of a torch-free install.
Writes ``benchmarks/results/performance.json`` and ``performance.md``.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import time
import warnings

import _fixtures  # noqa: F401  (sets the offline environment first)
from _fixtures import CAFORMER_NO_ONNX_REPO, CAFORMER_REPO, ROOT, WORK, build_hub, write_frames

GFLOP_PER_FACE = 44.3  # the card's figure; it leaves out the attention products (see counted_gflops)
RESULTS = os.path.join(ROOT, 'benchmarks', 'results')


def median_time(function, rounds):
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def interleaved(functions: dict, rounds: int) -> dict:
    """Median seconds of each function, run in turn round after round (fair under drift)."""
    times = {name: [] for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            started = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def matmul_peak(sizes=(2048, 3072, 4096), rounds=5):
    """The best fp32 GFLOP/s of a square matmul over ``sizes``, numpy's and onnxruntime's."""
    best = {'numpy_gflops': 0.0, 'onnxruntime_gflops': 0.0}
    for size in sizes:
        for key, value in _matmul_gflops(size, rounds).items():
            best[key] = max(best[key], value)
    return {**best, 'sizes': list(sizes), 'peak_gflops': max(best.values())}


def _matmul_gflops(size, rounds):
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper
    a = np.random.rand(size, size).astype(np.float32)
    b = np.random.rand(size, size).astype(np.float32)
    flops = 2 * size ** 3
    a @ b
    numpy_gflops = flops / median_time(lambda: a @ b, rounds) / 1e9
    graph = helper.make_graph([helper.make_node('MatMul', ['a', 'b'], ['c'])], 'matmul',
                              [helper.make_tensor_value_info('a', TensorProto.FLOAT, [size, size]),
                               helper.make_tensor_value_info('b', TensorProto.FLOAT, [size, size])],
                              [helper.make_tensor_value_info('c', TensorProto.FLOAT, [size, size])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count()
    session = ort.InferenceSession(model.SerializeToString(), options, providers=['CPUExecutionProvider'])
    session.run(None, {'a': a, 'b': b})
    ort_gflops = flops / median_time(lambda: session.run(None, {'a': a, 'b': b}), rounds) / 1e9
    return {'numpy_gflops': numpy_gflops, 'onnxruntime_gflops': ort_gflops}


COUNT_FLOPS = textwrap.dedent('''
    import json, timm, torch
    from timm.layers import set_fused_attn
    from torch.utils.flop_counter import FlopCounterMode
    set_fused_attn(False)  # explicit attention products, which the counter sees (fused ones it misses)
    model = timm.create_model('caformer_s36', num_classes=4).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.rand(1, 3, 384, 384))
    counts = {str(op): flops / 1e9 for op, flops in counter.get_flop_counts()['Global'].items()}
    print(json.dumps({'gflop_per_face': counter.get_total_flops() / 1e9, 'by_op': counts}))
''')


def counted_gflops() -> dict:
    """caformer_s36's FLOPs per 384 x 384 face as torch's FlopCounterMode counts them."""
    output = subprocess.run([sys.executable, '-c', COUNT_FLOPS], capture_output=True, text=True, check=True)
    return json.loads(output.stdout.strip().splitlines()[-1])


def card_way_runner(repo):
    """What a user writes from the card: processor + model, one crop at a time, after imgutils' detector."""
    import torch
    from imgutils.data import load_image
    from transformers import AutoImageProcessor, AutoModel
    from imgutils_facequal.detect import locate_faces
    processor = AutoImageProcessor.from_pretrained(repo, trust_remote_code=True)
    model = AutoModel.from_pretrained(repo, trust_remote_code=True, use_infer_head=True)
    model.eval()

    def run(paths):
        faces = 0
        for path in paths:
            image = load_image(path, mode='RGB', force_background='white')
            for location in locate_faces(image):  # imgutils' detectors, the same crops as the package
                input_ = processor(image.crop(location.crop_bbox))['pixel_values']
                with torch.no_grad():
                    output = model(input_)
                faces += int(output.shape[0])
        return faces
    return run


FP32_REFERENCE = 'fp32, export (rewritten, opset 17)'


def variant_models(export_dir, literal_export_dir, calibration_images):
    """The exported fp32 graphs and the reduced-precision variants of the fastest, as ONNX files."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, \
        quantize_static
    from imgutils_facequal import load_face_quality_model
    fp32 = os.path.join(export_dir, 'model.onnx')
    variants = {FP32_REFERENCE: fp32,
                'fp32, export --literal (opset 17)': os.path.join(literal_export_dir, 'model.onnx')}
    from huggingface_hub import hf_hub_download
    variants['fp32, published-style model.onnx (opset 14)'] = hf_hub_download(CAFORMER_REPO, 'model.onnx')
    target = os.path.join(WORK, 'int8-matmul.onnx')
    quantize_dynamic(fp32, target, op_types_to_quantize=['MatMul', 'Gemm'], weight_type=QuantType.QInt8)
    variants['int8 dynamic, MatMul/Gemm'] = target
    target = os.path.join(WORK, 'int8-matmul-constb.onnx')
    quantize_dynamic(fp32, target, op_types_to_quantize=['MatMul', 'Gemm'], weight_type=QuantType.QInt8,
                     extra_options={'MatMulConstBOnly': True})
    variants['int8 dynamic, weight MatMuls only'] = target
    target = os.path.join(WORK, 'int8-matmul-constb-per-channel.onnx')
    quantize_dynamic(fp32, target, op_types_to_quantize=['MatMul', 'Gemm'], weight_type=QuantType.QInt8,
                     per_channel=True, extra_options={'MatMulConstBOnly': True})
    variants['int8 dynamic, weight MatMuls only, per channel'] = target
    model = load_face_quality_model(CAFORMER_NO_ONNX_REPO)
    batches = [model.preprocess([image]) for image in calibration_images]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter({'input': batch} for batch in batches)

        def get_next(self):
            return next(self.items, None)

    target = os.path.join(WORK, 'int8-static-qdq.onnx')
    quantize_static(fp32, target, Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=['MatMul', 'Conv'],
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
    variants['int8 static QDQ, MatMul+Conv (calibrated)'] = target
    return variants


def compare_variants(variants, images, rounds, batch_size):
    import numpy as np
    import onnxruntime as ort
    from imgutils_facequal import load_face_quality_model
    model = load_face_quality_model(CAFORMER_NO_ONNX_REPO)
    batch = np.concatenate([model.preprocess([image]) for image in images[:batch_size]])
    sessions = {}
    for name, path in variants.items():
        options = ort.SessionOptions()
        options.intra_op_num_threads = os.cpu_count()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sessions[name] = ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
        sessions[name].run(None, {'input': batch})
    seconds = interleaved({name: (lambda s=session: s.run(None, {'input': batch}))
                           for name, session in sessions.items()}, rounds)
    inputs = [np.concatenate([model.preprocess([image]) for image in images[i:i + 8]]) for i in range(0, len(images), 8)]
    outputs = {name: np.concatenate([session.run(None, {'input': x})[0] for x in inputs])
               for name, session in sessions.items()}
    reference = outputs[FP32_REFERENCE]
    fp32_seconds = seconds[FP32_REFERENCE]
    rows = {}
    for name in variants:
        rows[name] = {
            'seconds_per_face': seconds[name] / len(batch),
            'speedup_vs_fp32_export': fp32_seconds / seconds[name],
            'speedup_vs_published_model': seconds['fp32, published-style model.onnx (opset 14)'] / seconds[name],
            'top_class_agreement': float(np.mean(outputs[name].argmax(1) == reference.argmax(1))),
            'max_probability_difference': float(np.abs(outputs[name] - reference).max()),
            'share_within_0_02': float(np.mean(np.abs(outputs[name] - reference).max(axis=1) <= 0.02)),
        }
    return rows


SUBPROCESS_MEMORY = textwrap.dedent('''
    import _fixtures, json, sys, time
    import numpy as np
    from imgutils_facequal import load_face_quality_model
    batch_size = int(sys.argv[1])
    model = load_face_quality_model(_fixtures.CAFORMER_REPO)  # the published-style model.onnx
    x = np.random.rand(batch_size, 3, 384, 384).astype(np.float32)
    model.predict(x)
    started = time.perf_counter()
    model.predict(x)
    seconds = time.perf_counter() - started
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the (large) parent across fork and exec
    with open('/proc/self/status') as f:
        peak_kb = next(int(line.split()[1]) for line in f if line.startswith('VmHWM:'))
    print(json.dumps({'batch_size': batch_size, 'peak_rss_mb': peak_kb / 1024, 'seconds_per_face': seconds / batch_size}))
''')


def memory_by_batch(batch_sizes):
    rows = []
    for batch_size in batch_sizes:
        output = subprocess.run([sys.executable, '-c', SUBPROCESS_MEMORY, str(batch_size)], capture_output=True,
                                text=True, check=True, cwd=os.path.dirname(os.path.abspath(__file__)))
        rows.append(json.loads(output.stdout.strip().splitlines()[-1]))
    return rows


def import_time(python, rounds=5):
    code = ('import sys, time; t = time.perf_counter(); import imgutils_facequal; '
            'print(time.perf_counter() - t, "torch" in sys.modules)')
    results = [subprocess.run([python, '-c', code], capture_output=True, text=True, check=True).stdout.split()
               for _ in range(rounds)]
    return {'seconds': statistics.median(float(r[0]) for r in results), 'imports_torch': results[0][1] == 'True'}


def first_result(script, image, model, rounds=3):
    """Seconds from starting the CLI to its first (only) result row, models cached."""
    def run():
        subprocess.run([script, 'score', image, '--model', model, '-q'], capture_output=True, check=True)
    run()  # warm the disk cache, as for a user's second command
    return median_time(run, rounds)


def ensure_base_venv(directory):
    python = os.path.join(directory, 'bin', 'python')
    if not os.path.exists(python):
        subprocess.run([sys.executable, '-m', 'venv', directory], check=True)
        subprocess.run([python, '-m', 'pip', 'install', '-q', ROOT], check=True)
    probe = subprocess.run([python, '-c', 'import importlib.util as u; print(u.find_spec("torch") is None)'],
                           capture_output=True, text=True, check=True)
    return python, probe.stdout.strip() == 'True'


def frame_groups():
    return {1: write_frames(os.path.join(WORK, 'perf-1face'), 12, 1),
            4: write_frames(os.path.join(WORK, 'perf-4face'), 4, 4)}


#: The ways of scoring compared, in the order of the table.
PATHS = {
    'card': "card's way",
    'default': 'default path',
    'exported': 'default path, exported graph',
    'pipeline': 'folder pipeline, exported graph',
}
#: The published-style repository (its own model.onnx) and the one whose model.onnx is our export.
PUBLISHED_MODEL, EXPORTED_MODEL = CAFORMER_REPO, CAFORMER_NO_ONNX_REPO


def worker(kind: str, faces: int, batch_size: int) -> dict:
    """One measurement in a fresh process, so torch's and onnxruntime's thread pools never
    compete (torch's OpenMP threads keep spinning after each call and would slow whatever
    runs next in the same process)."""
    import numpy as np
    from imgutils_facequal import detect_face_quality, load_face_quality_model
    from imgutils_facequal.pipeline import find_images, score_images
    if kind == 'stage':
        return classifier_stage(batch_size)
    group = frame_groups()[faces]
    if kind == 'card':
        run = card_way_runner(EXPORTED_MODEL)  # the same weights; the card's way never reads model.onnx
    elif kind in ('default', 'exported'):
        model_name = PUBLISHED_MODEL if kind == 'default' else EXPORTED_MODEL

        def run(paths):
            return sum(len(detect_face_quality(path, model_name=model_name)) for path in paths)
    elif kind == 'pipeline':
        def run(paths):
            return sum(len(r.faces) for r in score_images(find_images(paths), model_name=EXPORTED_MODEL))
    else:
        raise ValueError(kind)
    run(group[:2])  # warm-up: models loaded, sessions created, first calls made
    started = time.perf_counter()
    found = run(group)
    seconds = time.perf_counter() - started
    assert found == len(group) * faces, (kind, found)
    return {'seconds': seconds, 'faces': found}


def classifier_stage(batch_size: int, rounds: int = 9) -> dict:
    """Seconds per face of the published graph and of the export, interleaved in one process.

    Both run in onnxruntime, so they can share a process; alternating them call by call
    cancels the machine's drift, and the per-call ratio is the robust comparison.
    """
    import numpy as np
    from imgutils_facequal import load_face_quality_model
    models = {'default': load_face_quality_model(PUBLISHED_MODEL), 'exported': load_face_quality_model(EXPORTED_MODEL)}
    x = np.random.rand(batch_size, 3, 384, 384).astype(np.float32)
    times = {name: [] for name in models}
    for model in models.values():
        model.predict(x)
    for _ in range(rounds):
        for name, model in models.items():
            started = time.perf_counter()
            model.predict(x)
            times[name].append(time.perf_counter() - started)
    ratios = [d / e for d, e in zip(times['default'], times['exported'])]
    return {**{name: statistics.median(values) / batch_size for name, values in times.items()},
            'exported_speedup': statistics.median(ratios)}


def in_worker(kind: str, faces: int = 1, batch_size: int = 4) -> dict:
    output = subprocess.run([sys.executable, os.path.abspath(__file__), '--worker', kind, '--faces', str(faces),
                             '--batch-size', str(batch_size)], capture_output=True, text=True, check=True)
    return json.loads(output.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--base-venv', default=None)
    parser.add_argument('--worker', default=None, help=argparse.SUPPRESS)
    parser.add_argument('--faces', type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument('--batch-size', type=int, default=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.filterwarnings('ignore')
    if args.worker:
        print(json.dumps(worker(args.worker, args.faces, args.batch_size)))
        return
    build_hub()
    report = {'machine': {'cpu': platform.processor() or platform.machine(), 'cpus': os.cpu_count(),
                          'python': platform.python_version()}}
    with open('/proc/cpuinfo') as f:
        report['machine']['cpu'] = next((line.split(':', 1)[1].strip() for line in f if line.startswith('model name')),
                                        report['machine']['cpu'])

    from importlib.metadata import version
    from imgutils_facequal import detect_face_quality, exports_dir
    from imgutils_facequal.backends import CPU_BATCH_SIZE as DEFAULT_BATCH_SIZE
    report['versions'] = {'onnxruntime': version('onnxruntime'), 'torch': version('torch')}
    export_dir = os.path.join(exports_dir(), EXPORTED_MODEL.replace('/', '--'))
    literal_export_dir = os.path.join(WORK, 'literal-export')
    for target, option in ((export_dir, ''), (literal_export_dir, f', output_dir={literal_export_dir!r}, rewrite=False')):
        if not os.path.exists(target):  # in a child process, so no torch threads linger here
            started = time.perf_counter()
            subprocess.run([sys.executable, '-c', 'import _fixtures; from imgutils_facequal import export_onnx; '
                            f'export_onnx(_fixtures.CAFORMER_NO_ONNX_REPO{option})'], check=True,
                           capture_output=True, cwd=os.path.dirname(os.path.abspath(__file__)))
            report.setdefault('export_seconds', time.perf_counter() - started)

    report['matmul'] = matmul_peak()
    print('matmul peak', report['matmul'], flush=True)
    report['counted_flops'] = counted_gflops()
    print('counted flops', report['counted_flops'], flush=True)

    paths = frame_groups()
    report['paths'] = {}
    for faces, group in paths.items():
        face_count = len(group) * faces
        seconds = {kind: [] for kind in PATHS}
        for _ in range(args.rounds):  # alternate the paths, each in its own process
            for kind in seconds:
                result = in_worker(kind, faces)
                assert result['faces'] == face_count
                seconds[kind].append(result['seconds'])
        seconds = {kind: statistics.median(values) for kind, values in seconds.items()}
        report['paths'][f'{faces}_face'] = {
            'faces': face_count,
            **{f'{kind}_faces_per_s': face_count / value for kind, value in seconds.items()},
            **{f'{kind}_vs_card': seconds['card'] / value for kind, value in seconds.items() if kind != 'card'},
        }
        print(faces, report['paths'][f'{faces}_face'], flush=True)

    report['classifier_stage'] = {}
    counted = report['counted_flops']['gflop_per_face']
    for batch_size in (1, DEFAULT_BATCH_SIZE):
        measured = in_worker('stage', batch_size=batch_size)
        rows = report['classifier_stage'][f'batch_{batch_size}'] = {'exported_speedup': measured['exported_speedup']}
        for kind in ('default', 'exported'):
            stage = measured[kind]
            rows[kind] = {
                'seconds_per_face': stage, 'gflops': GFLOP_PER_FACE / stage, 'counted_gflops': counted / stage,
                'share_of_peak': GFLOP_PER_FACE / stage / report['matmul']['peak_gflops'],
                'counted_share_of_peak': counted / stage / report['matmul']['peak_gflops'],
                'share_of_onnxruntime_matmul': GFLOP_PER_FACE / stage / report['matmul']['onnxruntime_gflops'],
            }
    print('stage', report['classifier_stage'], flush=True)

    from _faces import cartoon_faces
    images = cartoon_faces(48, seed=1)
    variants = variant_models(export_dir, literal_export_dir, cartoon_faces(16, seed=2))
    report['variants'] = compare_variants(variants, images, max(5, args.rounds * 2), DEFAULT_BATCH_SIZE)
    for name, row in report['variants'].items():
        # stricter than the "1.3x the fp32 default": 1.3x the faster fp32 export
        row['ships'] = (row['speedup_vs_fp32_export'] >= 1.3 and row['top_class_agreement'] >= 0.99
                        and row['max_probability_difference'] <= 0.02)
        print(name, row, flush=True)

    report['memory_by_batch'] = memory_by_batch([1, 2, 4, 8, 32])
    report['default_batch_size_cpu'] = DEFAULT_BATCH_SIZE
    print('memory', report['memory_by_batch'], flush=True)

    script = os.path.join(os.path.dirname(sys.executable), 'imgutils-facequal')
    model_name = PUBLISHED_MODEL
    one = paths[1][0]
    detect_face_quality(one, model_name=model_name)  # models loaded: time one warm inference
    one_inference = median_time(lambda: detect_face_quality(one, model_name=model_name), 3)
    report['startup'] = {
        'one_inference_seconds': one_inference,
        'with_torch_installed': {'import': import_time(sys.executable),
                                 'first_result_seconds': first_result(script, one, model_name)},
    }
    if args.base_venv:
        python, torch_free = ensure_base_venv(args.base_venv)
        base_script = os.path.join(args.base_venv, 'bin', 'imgutils-facequal')
        report['startup']['without_torch_extra'] = {
            'torch_absent': torch_free, 'import': import_time(python),
            'first_result_seconds': first_result(base_script, one, model_name)}
    code = ('import time; t = time.perf_counter(); import imgutils.detect, sys; '
            'print(time.perf_counter() - t, "torch" in sys.modules)')
    plain = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout.split()
    report['startup']['plain_import_imgutils_detect'] = {'seconds': float(plain[0]), 'imports_torch': plain[1] == 'True'}
    print('startup', report['startup'], flush=True)
    report['gpu'] = 'No GPU was lent to this task; the device tool reported that this task was not drawn.'

    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, 'performance.json'), 'w') as f:
        json.dump(report, f, indent=2)
    with open(os.path.join(RESULTS, 'performance.md'), 'w') as f:
        f.write(markdown(report))
    print(markdown(report))


def markdown(report) -> str:
    lines = [f"Machine: {report['machine']['cpu']}, {report['machine']['cpus']} CPUs, Python "
             f"{report['machine']['python']}, onnxruntime {report['versions']['onnxruntime']}, "
             f"torch {report['versions']['torch']}.", '',
             '| images | faces | ' + ' | '.join(f'{label} (faces/s)' for label in PATHS.values()) + ' | '
             + ' | '.join(f'{label} ÷ card' for kind, label in PATHS.items() if kind != 'card') + ' |',
             '|---|---|' + '---|' * (2 * len(PATHS) - 1)]
    for key, row in report['paths'].items():
        lines.append(f"| {key.replace('_', ' ')} | {row['faces']} | "
                     + ' | '.join(f"{row[f'{kind}_faces_per_s']:.3f}" for kind in PATHS) + ' | '
                     + ' | '.join(f"{row[f'{kind}_vs_card']:.2f}x" for kind in PATHS if kind != 'card') + ' |')
    matmul, counted = report['matmul'], report['counted_flops']['gflop_per_face']
    lines += ['', f"fp32 matmul peak (best of {', '.join(f'{n} x {n}' for n in matmul['sizes'])}): numpy "
                  f"{matmul['numpy_gflops']:.0f} GFLOP/s, onnxruntime {matmul['onnxruntime_gflops']:.0f} GFLOP/s.", '',
              "Classifier stage alone (onnxruntime, the two graphs alternating call by call in one process), "
              f"with the card's {GFLOP_PER_FACE} GFLOP per face and with the {counted:.1f} GFLOP that torch's "
              "FlopCounterMode counts (the card's figure leaves out the attention products):", '',
              '| graph | batch | s per face | GFLOP/s (card) | share of peak | GFLOP/s (counted) | share of peak '
              '| share of onnxruntime\'s matmul (card) |', '|---|---|---|---|---|---|---|---|']
    for key, rows in report['classifier_stage'].items():
        for name, label in (('default', 'published model.onnx'), ('exported', 'export (rewritten)')):
            row = rows[name]
            lines.append(f"| {label} | {key.split('_')[1]} | {row['seconds_per_face']:.3f} | {row['gflops']:.0f} | "
                         f"{100 * row['share_of_peak']:.0f}% | {row['counted_gflops']:.0f} | "
                         f"{100 * row['counted_share_of_peak']:.0f}% | {100 * row['share_of_onnxruntime_matmul']:.0f}% |")
    lines += ['', 'The export against the published graph, median of the call-by-call ratios: '
              + ', '.join(f"{rows['exported_speedup']:.2f}x at batch {key.split('_')[1]}"
                          for key, rows in report['classifier_stage'].items()) + '.']
    lines += ['', '| variant | s per face | speed-up vs fp32 export | speed-up vs published model.onnx '
                  '| top-class agreement | max prob. difference | images within 0.02 | ships |',
              '|---|---|---|---|---|---|---|---|']
    for name, row in report['variants'].items():
        lines.append(f"| {name} | {row['seconds_per_face']:.3f} | {row['speedup_vs_fp32_export']:.2f}x | "
                     f"{row['speedup_vs_published_model']:.2f}x | {100 * row['top_class_agreement']:.1f}% | "
                     f"{row['max_probability_difference']:.4f} | {100 * row['share_within_0_02']:.1f}% | "
                     f"{'yes' if row['ships'] else 'no'} |")
    lines += ['', '| batch size | s per face | peak RSS (MB) |', '|---|---|---|']
    for row in report['memory_by_batch']:
        lines.append(f"| {row['batch_size']} | {row['seconds_per_face']:.3f} | {row['peak_rss_mb']:.0f} |")
    startup = report['startup']
    lines += ['', f"One image, in process (detect and score, warm): {startup['one_inference_seconds']:.2f} s."]
    for key, label in (('with_torch_installed', 'with the torch extra installed'),
                       ('without_torch_extra', 'without the torch extra')):
        if key in startup:
            row = startup[key]
            lines.append(f"- {label}: `import imgutils_facequal` {row['import']['seconds']:.3f} s "
                         f"(imports torch: {'yes' if row['import']['imports_torch'] else 'no'}); "
                         f"`imgutils-facequal score one.png` start to result {row['first_result_seconds']:.2f} s.")
    plain = startup['plain_import_imgutils_detect']
    lines.append(f"- a plain `import imgutils.detect` with torch installed: {plain['seconds']:.2f} s "
                 f"(imports torch: {'yes' if plain['imports_torch'] else 'no'}).")
    lines += ['', report['gpu']]
    return '\n'.join(lines) + '\n'


if __name__ == '__main__':
    main()
