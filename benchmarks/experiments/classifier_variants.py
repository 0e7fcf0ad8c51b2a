"""Classifier variants, with near-free detectors: the study behind the choice of graphs,
precisions and backends (formerly ``benchmarks/performance.py``; its findings are in
``benchmarks/NOTES.md``; the run behind the docs is now ``python -m benchmarks.performance``).

The original description follows.

One reproducible performance run: the model card's way against this package's paths.

Built on the published architecture (timm caformer_s36, 4 classes, 384 x 384, random
weights) in the published layout, exported to ONNX by the project's own ``export_onnx``,
served offline; imgutils' real detector code runs on the tests' tiny detectors, so the
classifier is the cost being measured. In one run, on the same images, crops and weights:

1. the model card's way: transformers processor and model, one face crop at a time;
2. this package's default path: ``detect_face_quality`` per image on the published-style
   ``model.onnx`` (what a user gets without doing anything), and the folder pipeline
   that ``imgutils-facequal score`` runs on the same graph;
3. both after ``imgutils-facequal export`` (the exact MetaFormer rewrites);
4. the openvino backend (the same published-style ``model.onnx``, rewritten for OpenVINO,
   through OpenVINO), per image and in the folder pipeline;
5. reduced-precision variants of the exported graph, with their agreement with fp32, and
   bf16 where the CPU has bf16 instructions (onnxruntime's CPU provider has no bf16
   kernels): the card's model under torch's autocast, the opt-in (``precision='bf16'``,
   torch), and OpenVINO running the whole graph in bf16.

It also measures the machine's fp32 matmul peak, the classifier's achieved GFLOP/s, the
import time, the time from process start to the first result of the CLI, and peak memory
by batch size. Times are medians of several interleaved rounds; ratios come from this run.

Usage::

    python -m benchmarks.experiments.classifier_variants [--rounds 3] [--base-venv /tmp/facequal-base]

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

os.environ.setdefault('FACEQUAL_BENCH_DETECTORS', 'tiny')  # the classifier is the cost being measured
from benchmarks import _fixtures  # noqa: E402,F401  (sets the offline environment first)
from benchmarks._fixtures import (CAFORMER_NO_ONNX_REPO, CAFORMER_REPO, ROOT, WORK, build_hub, ensure_export, graph_as_published,
                       openvino_graph_as_published, write_frames)
from benchmarks._fixtures import matmul_calls  # noqa: F401  (fp32_runtimes imports it from here too)
from benchmarks._results import write_results
from imgutils_facequal.graphs.cache import REWRITE_ENV

GFLOP_PER_FACE = 44.3  # the card's figure; it leaves out the attention products (see counted_gflops)
RESULTS = os.path.join(ROOT, 'benchmarks', 'results')


def median_time(function, rounds):
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def matmul_peak(sizes=(2048, 3072, 4096), rounds=5):
    """The best fp32 GFLOP/s of a square matmul over ``sizes``, numpy's and onnxruntime's."""
    best = {'numpy_gflops': 0.0, 'onnxruntime_gflops': 0.0}
    for size in sizes:
        calls = matmul_calls(size)
        for runtime, call in calls.items():
            call()
            best[f'{runtime}_gflops'] = max(best[f'{runtime}_gflops'], 2 * size ** 3 / median_time(call, rounds) / 1e9)
    return {**best, 'sizes': list(sizes), 'peak_gflops': max(best.values())}


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
    from imgutils_facequal import FaceLocator
    processor = AutoImageProcessor.from_pretrained(repo, trust_remote_code=True)
    model = AutoModel.from_pretrained(repo, trust_remote_code=True, use_infer_head=True)
    model.eval()

    def run(paths):
        faces = 0
        for path in paths:
            image = load_image(path, mode='RGB', force_background='white')
            for location in FaceLocator().locate(image):  # imgutils' detectors, the same crops as the package
                input_ = processor(image.crop(location.crop_bbox))['pixel_values']
                with torch.no_grad():
                    output = model(input_)
                faces += int(output.shape[0])
        return faces
    return run


FP32_REFERENCE = 'fp32, export (rewritten, opset 17)'
FP32_PUBLISHED = 'fp32, published-style model.onnx (opset 14)'
FP32_DEFAULT = 'fp32, published-style model.onnx rewritten at load'


def variant_models(export_dir, literal_export_dir, calibration_images):
    """The fp32 graphs and the int8 variants of the fastest (the export), as ONNX files."""
    from huggingface_hub import hf_hub_download
    from benchmarks._quantize import quantized_variants
    from imgutils_facequal import load_face_quality_model
    fp32 = os.path.join(export_dir, 'model.onnx')
    model = load_face_quality_model(CAFORMER_NO_ONNX_REPO)
    return {FP32_REFERENCE: fp32,
            'fp32, export --literal (opset 17)': os.path.join(literal_export_dir, 'model.onnx'),
            FP32_PUBLISHED: hf_hub_download(CAFORMER_REPO, 'model.onnx'),
            FP32_DEFAULT: load_face_quality_model(CAFORMER_REPO).run_path,
            **quantized_variants(fp32, WORK, [model.preprocess([image]) for image in calibration_images])}


def compare_variants(variants, images, rounds, batch_size):
    from benchmarks._quantize import agreement, batches_of, probabilities, seconds_per_face, ships
    from imgutils_facequal import load_face_quality_model
    batches = batches_of(load_face_quality_model(CAFORMER_NO_ONNX_REPO), images)
    seconds = seconds_per_face(variants, batches[0][:batch_size], rounds)
    reference = probabilities(variants[FP32_REFERENCE], batches)
    rows = {}
    for name, path in variants.items():
        rows[name] = {
            'seconds_per_face': seconds[name],
            'speedup_vs_fp32_export': seconds[FP32_REFERENCE] / seconds[name],
            'speedup_vs_published_model': seconds[FP32_PUBLISHED] / seconds[name],
            **agreement(probabilities(path, batches), reference),
        }
        # the bar taken against the faster fp32 graph, the export: stricter than against the published one
        rows[name]['ships'] = ships({**rows[name], 'speedup': rows[name]['speedup_vs_fp32_export']})
    return rows


def measured_variant_rows(measured: dict, rows: dict, images, prefixes: dict, checked: str,
                          extra_key: str) -> dict:
    """Rows of variants measured in a worker process (``prefixes``: variant name to the prefix
    of its keys in ``measured``), against the fp32 graphs of the variants table measured in
    this run, minutes apart. ``checked`` is also compared on the extra crops (its
    probabilities under ``extra_key``), and ships only if it passes the bar on both sets."""
    import numpy as np
    from benchmarks._faces import cartoon_faces
    from benchmarks._quantize import agreement, batches_of, probabilities, ships
    from imgutils_facequal import load_face_quality_model
    model = load_face_quality_model(CAFORMER_NO_ONNX_REPO)
    reference = probabilities(model.onnx_path, batches_of(model, images))
    result = {}
    for name, prefix in prefixes.items():
        seconds = measured[f'{prefix}seconds_per_face']
        row = result[name] = {
            'seconds_per_face': seconds,
            'speedup_vs_fp32_export': rows[FP32_REFERENCE]['seconds_per_face'] / seconds,
            'speedup_vs_published_model': rows[FP32_PUBLISHED]['seconds_per_face'] / seconds,
            'speedup_vs_default_graph': rows[FP32_DEFAULT]['seconds_per_face'] / seconds,
            **agreement(np.asarray(measured[f'{prefix}probabilities']), reference)}
        row['ships'] = ships({**row, 'speedup': row['speedup_vs_fp32_export']})
    extra = cartoon_faces(*BF16_EXTRA_IMAGES)
    row = result[checked]
    row['extra_crops'] = {'count': len(extra), **agreement(np.asarray(measured[extra_key]),
                                                          probabilities(model.onnx_path, batches_of(model, extra)))}
    row['ships'] = row['ships'] and ships({**row['extra_crops'], 'speedup': row['speedup_vs_fp32_export']})
    return result


def bf16_rows(measured: dict, rows: dict, images) -> dict:
    """The torch bf16 variants' rows (the whole model under autocast, and the opt-in with its
    blocks in bf16), measured in another process (torch and onnxruntime slow each other down
    in one); the opt-in is also checked on more crops."""
    result = measured_variant_rows(measured, rows, images, {BF16_VARIANT: '', OPT_IN_BF16_VARIANT: 'blocks_'},
                                   OPT_IN_BF16_VARIANT, 'blocks_probabilities_extra')
    for row in result.values():
        row['speedup_vs_torch_fp32'] = measured['fp32_seconds_per_face'] / row['seconds_per_face']
        row['torch_fp32_seconds_per_face'] = measured['fp32_seconds_per_face']
    return result


SUBPROCESS_LOAD = textwrap.dedent('''
    import json, os, time
    from benchmarks import _fixtures
    # _fixtures points the home at the work folder; the caller may want another (an empty one)
    if 'FACEQUAL_BENCH_LOAD_HOME' in os.environ:
        os.environ['IMGUTILS_FACEQUAL_HOME'] = os.environ['FACEQUAL_BENCH_LOAD_HOME']
    from imgutils_facequal.models import resolve_model
    from imgutils_facequal.backends.onnx import FaceQualityOnnxModel
    started = time.perf_counter()
    model = FaceQualityOnnxModel(resolve_model(_fixtures.CAFORMER_REPO), 'CPUExecutionProvider')
    seconds = time.perf_counter() - started
    with open('/proc/self/status') as f:
        peak_kb = next(int(line.split()[1]) for line in f if line.startswith('VmHWM:'))
    print(json.dumps({'seconds': seconds, 'peak_rss_mb': peak_kb / 1024, 'rewrites': model.graph_rewrites,
                      'run_path': model.run_path}))
''')


def graph_rewrite_cost() -> dict:
    """Loading the published-style model: the first time (rewrite and check, into an empty
    cache), from the cache, and with rewriting off."""
    import tempfile

    def load(**env):
        output = subprocess.run([sys.executable, '-c', SUBPROCESS_LOAD], capture_output=True, text=True, check=True,
                                cwd=ROOT, env={**os.environ, **env})
        return json.loads(output.stdout.strip().splitlines()[-1])
    with tempfile.TemporaryDirectory() as home:
        first = load(FACEQUAL_BENCH_LOAD_HOME=home)
        assert first['run_path'].startswith(home), first  # rewritten there, not found in the work folder's cache
        cached = min((load(FACEQUAL_BENCH_LOAD_HOME=home) for _ in range(3)), key=lambda r: r['seconds'])
        with open(os.path.join(os.path.dirname(cached['run_path']), 'rewrite.json')) as f:
            checked = json.load(f)
    as_published = min((load(**{REWRITE_ENV: '0'}) for _ in range(3)), key=lambda r: r['seconds'])
    return {'rewrites': first['rewrites'], 'max_difference': checked['max_difference'],
            'first_load_seconds': first['seconds'], 'first_load_peak_rss_mb': first['peak_rss_mb'],
            'cached_load_seconds': cached['seconds'], 'as_published_load_seconds': as_published['seconds']}


SUBPROCESS_MEMORY = textwrap.dedent('''
    import json, sys, time
    from benchmarks import _fixtures
    import numpy as np
    from imgutils_facequal import load_face_quality_model
    batch_size, backend = int(sys.argv[1]), sys.argv[2]
    model = load_face_quality_model(_fixtures.CAFORMER_REPO, backend=backend)  # the published-style model.onnx
    x = np.random.rand(batch_size, 3, 384, 384).astype(np.float32)
    model.predict(x)
    started = time.perf_counter()
    model.predict(x)
    seconds = time.perf_counter() - started
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the (large) parent across fork and exec
    with open('/proc/self/status') as f:
        peak_kb = next(int(line.split()[1]) for line in f if line.startswith('VmHWM:'))
    print(json.dumps({'batch_size': batch_size, 'backend': backend, 'peak_rss_mb': peak_kb / 1024,
                      'seconds_per_face': seconds / batch_size}))
''')


def memory_by_batch(batch_sizes, backend='onnx'):
    rows = []
    for batch_size in batch_sizes:
        output = subprocess.run([sys.executable, '-c', SUBPROCESS_MEMORY, str(batch_size), backend],
                                capture_output=True, text=True, check=True,
                                cwd=ROOT)
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
    'as_published': 'default path, graph as published',
    'default': 'default path',
    'pipeline_default': 'folder pipeline',
    'exported': 'default path, exported graph',
    'pipeline': 'folder pipeline, exported graph',
    'opt_in_bf16': "default path, precision='bf16'",
    'pipeline_bf16': "folder pipeline, precision='bf16'",
    'openvino': "default path, backend='openvino'",
    'pipeline_openvino': "folder pipeline, backend='openvino'",
    'openvino_bf16': "default path, backend='openvino', precision='bf16'",
    'pipeline_openvino_bf16': "folder pipeline, backend='openvino', precision='bf16'",
}
#: The openvino backend's paths and their options.
OPENVINO_PATHS = {'openvino': {'backend': 'openvino'}, 'pipeline_openvino': {'backend': 'openvino'},
                  'openvino_bf16': {'backend': 'openvino', 'precision': 'bf16'},
                  'pipeline_openvino_bf16': {'backend': 'openvino', 'precision': 'bf16'}}
#: The published-style repository (its own model.onnx) and the one whose model.onnx is our export.
PUBLISHED_MODEL, EXPORTED_MODEL = CAFORMER_REPO, CAFORMER_NO_ONNX_REPO


def worker(kind: str, faces: int, batch_size: int) -> dict:
    """One measurement in a fresh process, so torch's and onnxruntime's thread pools never
    compete (torch's OpenMP threads keep spinning after each call and would slow whatever
    runs next in the same process)."""
    from imgutils_facequal import detect_face_quality
    from imgutils_facequal.pipeline import find_images, score_images
    if kind == 'stage':
        return classifier_stage(batch_size)
    if kind == 'bf16':
        return bf16_autocast(batch_size, rounds=7)
    if kind == 'openvino_variants':
        return openvino_bf16(batch_size, rounds=7)
    group = frame_groups()[faces]
    if kind == 'as_published':  # the package before it rewrote graphs at load
        os.environ[REWRITE_ENV] = '0'
        kind = 'default'
    if kind == 'card':
        run = card_way_runner(EXPORTED_MODEL)  # the same weights; the card's way never reads model.onnx
    elif kind in ('default', 'exported'):
        model_name = PUBLISHED_MODEL if kind == 'default' else EXPORTED_MODEL

        def run(paths):
            return sum(len(detect_face_quality(path, model_name=model_name)) for path in paths)
    elif kind in ('pipeline', 'pipeline_default'):
        model_name = EXPORTED_MODEL if kind == 'pipeline' else PUBLISHED_MODEL

        def run(paths):
            return sum(len(r.faces) for r in score_images(find_images(paths), model_name=model_name))
    elif kind in OPENVINO_PATHS:
        options = OPENVINO_PATHS[kind]
        if not kind.startswith('pipeline'):
            def run(paths):
                return sum(len(detect_face_quality(path, model_name=PUBLISHED_MODEL, **options)) for path in paths)
        else:
            def run(paths):
                return sum(len(r.faces) for r in score_images(find_images(paths), model_name=PUBLISHED_MODEL,
                                                              **options))
    elif kind == 'opt_in_bf16':  # the transformers backend with its blocks in bf16
        def run(paths):
            return sum(len(detect_face_quality(path, model_name=PUBLISHED_MODEL, **BF16_OPTIONS)) for path in paths)
    elif kind == 'pipeline_bf16':
        def run(paths):
            return sum(len(r.faces) for r in score_images(find_images(paths), model_name=PUBLISHED_MODEL,
                                                          **BF16_OPTIONS))
    else:
        raise ValueError(kind)
    run(group[:2])  # warm-up: models loaded, sessions created, first calls made
    started = time.perf_counter()
    found = run(group)
    seconds = time.perf_counter() - started
    assert found == len(group) * faces, (kind, found)
    return {'seconds': seconds, 'faces': found}


#: The matmul measured alongside the classifier stage, as the peak that stage is compared with.
STAGE_MATMUL_SIZE = 4096
#: Seconds of rest before each timed call of the stage: OpenBLAS's and onnxruntime's threads
#: keep spinning for a moment after a call, and would slow whichever call came next.
PAUSE_BEFORE_CALL = 0.3


#: The graphs of the classifier-stage table: the published file as it is, as the package runs it, the export.
STAGE_GRAPHS = {'as_published': 'published model.onnx, as published',
                'default': 'published model.onnx, rewritten at load', 'exported': 'export',
                'openvino_as_published': 'published model.onnx, as published, OpenVINO',
                'openvino': "published model.onnx, rewritten for OpenVINO (backend='openvino')"}


def classifier_stage(batch_size: int, rounds: int = 9) -> dict:
    """Seconds per face of the published graph (as it is, rewritten at load, and through
    OpenVINO) and of the export, interleaved in one process with a large matmul in numpy
    and in onnxruntime.

    Alternating them call by call cancels the machine's drift: the per-call ratios between
    the graphs, and the share of the matmul peak, compare times taken in the same minute.
    """
    import numpy as np
    from imgutils_facequal import load_face_quality_model
    models = {'as_published': graph_as_published(PUBLISHED_MODEL), 'default': load_face_quality_model(PUBLISHED_MODEL),
              'exported': load_face_quality_model(EXPORTED_MODEL),
              'openvino_as_published': openvino_graph_as_published(PUBLISHED_MODEL),
              'openvino': load_face_quality_model(PUBLISHED_MODEL, backend='openvino')}
    assert models['default'].graph_rewrites and not models['as_published'].graph_rewrites
    assert models['openvino'].graph_rewrites and not models['openvino_as_published'].graph_rewrites
    x = np.random.rand(batch_size, 3, 384, 384).astype(np.float32)
    calls = {name: (lambda model=model: model.predict(x)) for name, model in models.items()}
    calls.update({f'matmul_{runtime}': call for runtime, call in matmul_calls(STAGE_MATMUL_SIZE).items()})
    times = {name: [] for name in calls}
    for call in calls.values():
        call()
    for _ in range(rounds):
        for name, call in calls.items():
            time.sleep(PAUSE_BEFORE_CALL)
            started = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - started)
    def speedup(slower, faster):
        return statistics.median(s / f for s, f in zip(times[slower], times[faster]))
    matmul_flops = 2 * STAGE_MATMUL_SIZE ** 3
    from benchmarks.experiments.profile_onnx import products_ceiling, profile
    return {**{name: statistics.median(times[name]) / batch_size for name in models},
            'default_products': products_ceiling(profile(models['default'].run_path, batch_size, runs=5)),
            'exported_speedup': speedup('as_published', 'exported'),
            'rewritten_speedup': speedup('as_published', 'default'),
            'openvino_speedup': speedup('default', 'openvino'),
            'openvino_rewritten_speedup': speedup('openvino_as_published', 'openvino'),
            'matmul_gflops': {runtime: matmul_flops / statistics.median(times[f'matmul_{runtime}']) / 1e9
                              for runtime in ('numpy', 'onnxruntime')}}


STAGE_TARGET_SHARE = 0.75  # of the fp32 matmul peak, on the card's FLOPs (the target)


def stage_ceiling(seconds_per_face: float, products: dict, peak: float) -> dict:
    """What the products alone allow the default graph, against the peak on the card's FLOPs.

    ``products`` is the profile's share of kernel time in the products (``profile_onnx``),
    applied to the timed seconds per face. With every other kernel free the stage would
    reach ``ceiling_share_of_peak``; ``other_seconds_per_face_for_target`` is how long
    everything else could take for the stage to reach the target share."""
    products_seconds = products['products_share_of_kernel_time'] * seconds_per_face
    return {**products, 'products_seconds_per_face': products_seconds,
            'ceiling_share_of_peak': GFLOP_PER_FACE / products_seconds / peak,
            'other_seconds_per_face': seconds_per_face - products_seconds,
            'other_seconds_per_face_for_target': GFLOP_PER_FACE / (STAGE_TARGET_SHARE * peak) - products_seconds}


#: The CPU features that decide which reduced-precision kernels exist (read from /proc/cpuinfo).
CPU_FEATURES = ('avx2', 'fma', 'avx512f', 'avx512_vnni', 'avx_vnni', 'avx512_bf16', 'amx_bf16', 'amx_int8')


def cpu_features() -> list:
    with open('/proc/cpuinfo') as f:
        flags = next((line.split(':', 1)[1].split() for line in f if line.startswith('flags')), [])
    return [feature for feature in CPU_FEATURES if feature in flags]


BF16_VARIANT = "bf16 autocast, torch (the card's model)"
OPT_IN_BF16_VARIANT = "bf16 in the blocks, torch (precision='bf16')"
BF16_OPTIONS = {'backend': 'transformers', 'device': 'cpu', 'precision': 'bf16'}
#: More crops for the opt-in's agreement check than the other variants get.
BF16_EXTRA_IMAGES = (192, 7)


def bf16_autocast(batch_size: int, rounds: int) -> dict:
    """The card's model in torch, fp32 and under ``torch.autocast('cpu', torch.bfloat16)``:
    seconds per face (the two alternating call by call) and the bf16 probabilities of the
    cartoon crops. oneDNN runs the bf16 products on AMX or AVX512-BF16 where the CPU has them."""
    import numpy as np
    import torch
    from benchmarks._faces import cartoon_faces
    from benchmarks._quantize import batches_of
    from imgutils_facequal import load_face_quality_model
    model = load_face_quality_model(EXPORTED_MODEL, backend='transformers', device='cpu')
    in_blocks = load_face_quality_model(EXPORTED_MODEL, **BF16_OPTIONS)  # the opt-in, as the package runs it
    onnx_model = load_face_quality_model(EXPORTED_MODEL)  # the same preprocessing as the ONNX variants
    images = cartoon_faces(48, seed=1)

    def predict(batch, mode):
        if mode == 'blocks':
            return in_blocks.predict(batch)
        with torch.inference_mode(), torch.autocast('cpu', dtype=torch.bfloat16, enabled=mode == 'whole'):
            output = model.model(batch).float()
        # the infer head's softmax, rounded to bf16 under autocast: rows sum to 1 only within
        # bf16's rounding, so normalise them (a softmax over them would count them as logits)
        return (output / output.sum(dim=-1, keepdim=True)).numpy()
    x = torch.as_tensor(onnx_model.preprocess(images[:batch_size]))
    times = {'fp32': [], 'whole': [], 'blocks': []}
    for mode in times:
        predict(x, mode)
    for _ in range(rounds):
        for mode in times:
            started = time.perf_counter()
            predict(x, mode)
            times[mode].append(time.perf_counter() - started)

    def probabilities(mode, crops):
        return np.concatenate([predict(torch.as_tensor(batch), mode) for batch in batches_of(onnx_model, crops)])
    return {'fp32_seconds_per_face': statistics.median(times['fp32']) / batch_size,
            'seconds_per_face': statistics.median(times['whole']) / batch_size,
            'probabilities': probabilities('whole', images).tolist(),
            'blocks_seconds_per_face': statistics.median(times['blocks']) / batch_size,
            'blocks_probabilities': probabilities('blocks', images).tolist(),
            'blocks_probabilities_extra': probabilities('blocks', cartoon_faces(*BF16_EXTRA_IMAGES)).tolist()}


OPENVINO_BF16_VARIANT = 'bf16, OpenVINO (the whole graph)'
OPENVINO_FP32_VARIANT = "fp32, OpenVINO (backend='openvino')"
OPENVINO_OPT_IN_VARIANT = "bf16 in stages 0 and 1, OpenVINO (backend='openvino', precision='bf16')"


class WholeGraphBf16:
    """The whole graph compiled by OpenVINO in bf16 (``INFERENCE_PRECISION_HINT``): a variant
    the package does not offer, built here from OpenVINO directly. ``predict`` as the backend's."""

    def __init__(self, path: str):
        import openvino
        core = openvino.Core()
        self.compiled = core.compile_model(core.read_model(path), 'CPU', {'INFERENCE_PRECISION_HINT': 'bf16',
                                                                          'PERFORMANCE_HINT': 'LATENCY'})
        self.request = self.compiled.create_infer_request()

    def predict(self, batch):
        import numpy as np
        rows = np.concatenate([self.request.infer({0: batch[index:index + 1]})[0].copy()
                               for index in range(len(batch))])
        return rows / rows.sum(axis=1, keepdims=True)


def openvino_bf16(batch_size: int, rounds: int) -> dict:
    """The openvino backend's models of the published-style model.onnx, fp32, the bf16 opt-in
    (the products of stages 0 and 1 in bf16) and the whole graph in bf16 (not offered),
    alternating call by call: seconds per face, and the probabilities of the cartoon crops
    (the bf16 ones also of the extra crops)."""
    import numpy as np
    from benchmarks._faces import cartoon_faces
    from benchmarks._quantize import alternating_seconds_per_face, batches_of
    from imgutils_facequal.models import resolve_model
    from imgutils_facequal.backends.openvino import FaceQualityOpenVINOModel
    source = resolve_model(PUBLISHED_MODEL)
    models = {'fp32': FaceQualityOpenVINOModel(source), 'split': FaceQualityOpenVINOModel(source, 'cpu', 'bf16')}
    models['whole'] = WholeGraphBf16(models['fp32'].run_path)
    images = cartoon_faces(48, seed=1)
    batches = batches_of(models['fp32'], images)
    x = batches[0][:batch_size]
    seconds = alternating_seconds_per_face({name: (lambda model=model: model.predict(x))
                                            for name, model in models.items()}, batch_size, rounds)

    def probabilities(name, crops_batches):
        return np.concatenate([models[name].predict(batch) for batch in crops_batches]).tolist()
    extra = batches_of(models['fp32'], cartoon_faces(*BF16_EXTRA_IMAGES))
    return {**{f'{name}_seconds_per_face': seconds[name] for name in models},
            **{f'{name}_probabilities': probabilities(name, batches) for name in models},
            **{f'{name}_probabilities_extra': probabilities(name, extra) for name in ('split', 'whole')},
            'bf16_products': models['split'].bf16_products}


def openvino_rows(measured: dict, rows: dict, images) -> dict:
    """OpenVINO's rows: fp32, the bf16 opt-in and the whole graph in bf16, each bf16 one also
    checked on the extra crops; the opt-in ships only if it passes the bar on both sets."""
    result = measured_variant_rows(measured, rows, images, {OPENVINO_FP32_VARIANT: 'fp32_',
                                                            OPENVINO_OPT_IN_VARIANT: 'split_'},
                                   OPENVINO_OPT_IN_VARIANT, 'split_probabilities_extra')
    result.update(measured_variant_rows(measured, rows, images, {OPENVINO_BF16_VARIANT: 'whole_'},
                                        OPENVINO_BF16_VARIANT, 'whole_probabilities_extra'))
    result[OPENVINO_BF16_VARIANT]['ships'] = False  # past the bar: the backend runs only the opt-in
    for name in (OPENVINO_OPT_IN_VARIANT, OPENVINO_BF16_VARIANT):
        result[name]['speedup_vs_openvino_fp32'] = result[OPENVINO_FP32_VARIANT]['seconds_per_face'] / result[name][
            'seconds_per_face']
    result[OPENVINO_OPT_IN_VARIANT]['bf16_products'] = measured['bf16_products']
    return result


def in_worker(kind: str, faces: int = 1, batch_size: int = 4) -> dict:
    output = subprocess.run([sys.executable, '-m', 'benchmarks.experiments.classifier_variants', '--worker', kind,
                             '--faces', str(faces), '--batch-size', str(batch_size)], capture_output=True, text=True,
                            check=True, cwd=ROOT)
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
                          'python': platform.python_version(), 'features': cpu_features()}}
    with open('/proc/cpuinfo') as f:
        report['machine']['cpu'] = next((line.split(':', 1)[1].strip() for line in f if line.startswith('model name')),
                                        report['machine']['cpu'])

    from importlib.metadata import version
    from imgutils_facequal import detect_face_quality
    from imgutils_facequal.backends import CPU_BATCH_SIZE as DEFAULT_BATCH_SIZE
    report['versions'] = {'onnxruntime': version('onnxruntime'), 'openvino': version('openvino'),
                          'torch': version('torch')}
    started = time.perf_counter()
    export_dir = ensure_export()
    if time.perf_counter() - started > 1:
        report['export_seconds'] = time.perf_counter() - started
    literal_export_dir = ensure_export(os.path.join(WORK, 'literal-export'), rewrite=False)

    report['graph_rewrite'] = graph_rewrite_cost()
    print('graph rewrite', report['graph_rewrite'], flush=True)
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
        matmul = measured['matmul_gflops']
        peak = max(matmul.values())
        rows = report['classifier_stage'][f'batch_{batch_size}'] = {
            'exported_speedup': measured['exported_speedup'], 'rewritten_speedup': measured['rewritten_speedup'],
            'openvino_speedup': measured['openvino_speedup'],
            'openvino_rewritten_speedup': measured['openvino_rewritten_speedup'], 'matmul_gflops_alongside': matmul}
        for kind in STAGE_GRAPHS:
            stage = measured[kind]
            rows[kind] = {
                'seconds_per_face': stage, 'gflops': GFLOP_PER_FACE / stage, 'counted_gflops': counted / stage,
                'share_of_peak': GFLOP_PER_FACE / stage / peak,
                'counted_share_of_peak': counted / stage / peak,
                'share_of_onnxruntime_matmul': GFLOP_PER_FACE / stage / matmul['onnxruntime'],
            }
        rows['default'].update(stage_ceiling(rows['default']['seconds_per_face'], measured['default_products'], peak))
    print('stage', report['classifier_stage'], flush=True)

    from benchmarks._faces import cartoon_faces
    images = cartoon_faces(48, seed=1)
    variants = variant_models(export_dir, literal_export_dir, cartoon_faces(16, seed=2))
    report['variants'] = compare_variants(variants, images, max(5, args.rounds * 2), DEFAULT_BATCH_SIZE)
    if {'avx512_bf16', 'amx_bf16'} & set(report['machine']['features']):
        report['variants'].update(bf16_rows(in_worker('bf16', batch_size=DEFAULT_BATCH_SIZE),
                                            report['variants'], images))
        report['variants'].update(openvino_rows(in_worker('openvino_variants', batch_size=DEFAULT_BATCH_SIZE),
                                                report['variants'], images))
    else:
        report['bf16'] = 'not measured: this CPU has neither AVX512-BF16 nor AMX, so bf16 would be emulated'
    for name, row in report['variants'].items():
        print(name, row, flush=True)

    report['memory_by_batch'] = memory_by_batch([1, 2, 4, 8, 32])
    report['memory_openvino'] = memory_by_batch([1, DEFAULT_BATCH_SIZE, DEFAULT_BATCH_SIZE + 1], backend='openvino')
    report['default_batch_size_cpu'] = DEFAULT_BATCH_SIZE
    print('memory', report['memory_by_batch'], report['memory_openvino'], flush=True)

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
    report['gpu'] = ('The GPU table comes from benchmarks/gpu_performance.py, run on a lent GPU through the '
                     'device tool: see the GPU section below.')

    write_results(RESULTS, 'performance', report, markdown(report))


def markdown(report) -> str:
    features = ', '.join(report['machine'].get('features', [])) or 'none of ' + ', '.join(CPU_FEATURES)
    lines = [f"Machine: {report['machine']['cpu']}, {report['machine']['cpus']} CPUs ({features}), Python "
             f"{report['machine']['python']}, onnxruntime {report['versions']['onnxruntime']}, "
             f"OpenVINO {report['versions'].get('openvino', '(not measured)')}, torch {report['versions']['torch']}.",
             '',
             '| images | faces | ' + ' | '.join(f'{label} (faces/s)' for label in PATHS.values()) + ' | '
             + ' | '.join(f'{label} ÷ card' for kind, label in PATHS.items() if kind != 'card') + ' |',
             '|---|---|' + '---|' * (2 * len(PATHS) - 1)]
    for key, row in report['paths'].items():
        lines.append(f"| {key.replace('_', ' ')} | {row['faces']} | "
                     + ' | '.join(f"{row[f'{kind}_faces_per_s']:.3f}" for kind in PATHS) + ' | '
                     + ' | '.join(f"{row[f'{kind}_vs_card']:.2f}x" for kind in PATHS if kind != 'card') + ' |')
    matmul, counted = report['matmul'], report['counted_flops']['gflop_per_face']
    lines += ['', f"fp32 matmul peak at the start of the run (best of "
                  f"{', '.join(f'{n} x {n}' for n in matmul['sizes'])}): numpy {matmul['numpy_gflops']:.0f} GFLOP/s, "
                  f"onnxruntime {matmul['onnxruntime_gflops']:.0f} GFLOP/s (its right-hand matrix a constant, packed "
                  "once like the classifier's weights).", '',
              "Classifier stage alone: the graphs alternate call by call in one process with a "
              f"{STAGE_MATMUL_SIZE} x {STAGE_MATMUL_SIZE} matmul in numpy and in onnxruntime, and each share is of "
              "the faster matmul measured alongside, in the same minutes. GFLOP/s with the card's "
              f"{GFLOP_PER_FACE} GFLOP per face and with the {counted:.1f} GFLOP that torch's FlopCounterMode "
              "counts (the card's figure leaves out the attention products):", '',
              '| graph | batch | s per face | GFLOP/s (card) | share of peak | GFLOP/s (counted) | share of peak '
              '| share of onnxruntime\'s matmul (card) | matmul alongside, numpy / onnxruntime (GFLOP/s) |',
              '|---|---|---|---|---|---|---|---|---|']
    for key, rows in report['classifier_stage'].items():
        alongside = rows['matmul_gflops_alongside']
        for name, label in STAGE_GRAPHS.items():
            row = rows[name]
            lines.append(f"| {label} | {key.split('_')[1]} | {row['seconds_per_face']:.3f} | {row['gflops']:.0f} | "
                         f"{100 * row['share_of_peak']:.0f}% | {row['counted_gflops']:.0f} | "
                         f"{100 * row['counted_share_of_peak']:.0f}% | {100 * row['share_of_onnxruntime_matmul']:.0f}% "
                         f"| {alongside['numpy']:.0f} / {alongside['onnxruntime']:.0f} |")
    for key, rows in report['classifier_stage'].items():
        row = rows['default']
        if 'ceiling_share_of_peak' in row:
            batch = key.split('_')[1]
            lines += ['', f"Ceiling of the graph rewritten at load, batch {batch} (onnxruntime's profiler): "
                          "its products (matrix products, attention, dense convolutions) take "
                          f"{100 * row['products_share_of_kernel_time']:.0f}% of the kernel time, "
                          f"{row['products_seconds_per_face']:.3f} s per face; with every other kernel free the "
                          f"stage would reach {100 * row['ceiling_share_of_peak']:.0f}% of the peak on the card's "
                          "FLOPs. " + (
                              f"For {100 * STAGE_TARGET_SHARE:.0f}%, everything else would have to take "
                              f"{1000 * row['other_seconds_per_face_for_target']:.0f} ms per face, against "
                              f"{1000 * row['other_seconds_per_face']:.0f} ms."
                              if row['other_seconds_per_face_for_target'] > 0 else
                              f"The products alone are too slow for {100 * STAGE_TARGET_SHARE:.0f}%; everything "
                              f"else takes {1000 * row['other_seconds_per_face']:.0f} ms per face.")]
    lines += ['', 'Against the published graph as it is, median of the call-by-call ratios: rewritten at load '
              + ', '.join(f"{rows['rewritten_speedup']:.2f}x at batch {key.split('_')[1]}"
                          for key, rows in report['classifier_stage'].items()) + '; the export '
              + ', '.join(f"{rows['exported_speedup']:.2f}x at batch {key.split('_')[1]}"
                          for key, rows in report['classifier_stage'].items()) + '.']
    if all('openvino_speedup' in rows for rows in report['classifier_stage'].values()):
        lines += ['', "OpenVINO against the graph rewritten at load (onnxruntime, the default path), median of the "
                  "call-by-call ratios: " + ', '.join(f"{rows['openvino_speedup']:.2f}x at batch {key.split('_')[1]}"
                                                     for key, rows in report['classifier_stage'].items()) + '.']
    if all('openvino_rewritten_speedup' in rows for rows in report['classifier_stage'].values()):
        lines[-1] = lines[-1][:-1] + "; the graph rewritten for OpenVINO against the graph as published, both in " \
            "OpenVINO: " + ', '.join(f"{rows['openvino_rewritten_speedup']:.2f}x at batch {key.split('_')[1]}"
                                     for key, rows in report['classifier_stage'].items()) + '.'
    load = report['graph_rewrite']
    lines += ['', f"Rewriting the published graph at its first load ({', '.join(load['rewrites'])}; checked on "
                  f"the export's check images, largest difference {load['max_difference']:.1e}) took "
                  f"{load['first_load_seconds']:.1f} s with a peak RSS of {load['first_load_peak_rss_mb']:.0f} MB, "
                  f"once; later loads take {load['cached_load_seconds']:.1f} s "
                  f"({load['as_published_load_seconds']:.1f} s for the graph as published)."]
    lines += ['', '| variant | s per face | speed-up vs fp32 export | speed-up vs published model.onnx '
                  '| top-class agreement | max prob. difference | images within 0.02 | ships |',
              '|---|---|---|---|---|---|---|---|']
    for name, row in report['variants'].items():
        lines.append(f"| {name} | {row['seconds_per_face']:.3f} | {row['speedup_vs_fp32_export']:.2f}x | "
                     f"{row['speedup_vs_published_model']:.2f}x | {100 * row['top_class_agreement']:.1f}% | "
                     f"{row['max_probability_difference']:.4f} | {100 * row['share_within_0_02']:.1f}% | "
                     f"{'yes' if row['ships'] else 'no'} |")
    if BF16_VARIANT in report['variants']:
        row, opt_in = report['variants'][BF16_VARIANT], report['variants'][OPT_IN_BF16_VARIANT]
        extra = opt_in['extra_crops']
        lines += ['', "The torch bf16 rows are measured in their own process at batch "
                      f"{report['default_batch_size_cpu']}, call by call with the same model in fp32, which took "
                      f"{row['torch_fp32_seconds_per_face']:.3f} s per face (the whole model in bf16 "
                      f"{row['speedup_vs_torch_fp32']:.2f}x faster than that, the blocks only "
                      f"{opt_in['speedup_vs_torch_fp32']:.2f}x). Against the published graph rewritten at load, what "
                      f"the default path runs: {row['speedup_vs_default_graph']:.2f}x and "
                      f"{opt_in['speedup_vs_default_graph']:.2f}x. The opt-in on {extra['count']} more crops: "
                      f"top-class agreement {100 * extra['top_class_agreement']:.1f}%, max prob. difference "
                      f"{extra['max_probability_difference']:.4f}, {100 * extra['share_within_0_02']:.1f}% within "
                      "0.02."]
    if OPENVINO_BF16_VARIANT in report['variants']:
        opt_in, whole = report['variants'][OPENVINO_OPT_IN_VARIANT], report['variants'][OPENVINO_BF16_VARIANT]

        def on_extra(row):
            extra = row['extra_crops']
            return (f"{extra['count']} more crops: top-class agreement {100 * extra['top_class_agreement']:.1f}%, "
                    f"max prob. difference {extra['max_probability_difference']:.4f}, "
                    f"{100 * extra['share_within_0_02']:.1f}% within 0.02")
        lines += ['', "The OpenVINO rows are the openvino backend's models of the published-style model.onnx, "
                      f"measured in their own process at batch {report['default_batch_size_cpu']}, call by call: "
                      f"the opt-in ({opt_in['bf16_products']} products in bf16) "
                      f"{opt_in['speedup_vs_openvino_fp32']:.2f}x faster than OpenVINO's fp32 and "
                      f"{opt_in['speedup_vs_default_graph']:.2f}x the graph rewritten at load (the default path), "
                      f"on {on_extra(opt_in)}; the whole graph in bf16 (not offered: the backend runs only the "
                      f"opt-in) {whole['speedup_vs_openvino_fp32']:.2f}x and "
                      f"{whole['speedup_vs_default_graph']:.2f}x, on {on_extra(whole)}."]
    elif 'bf16' in report:
        lines += ['', f"bf16: {report['bf16']}."]
    lines += ['', '| batch size | s per face | peak RSS (MB) |', '|---|---|---|']
    for row in report['memory_by_batch']:
        lines.append(f"| {row['batch_size']} | {row['seconds_per_face']:.3f} | {row['peak_rss_mb']:.0f} |")
    for row in report.get('memory_openvino', []):
        lines.append(f"| {row['batch_size']}, backend='openvino' | {row['seconds_per_face']:.3f} | "
                     f"{row['peak_rss_mb']:.0f} |")
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
