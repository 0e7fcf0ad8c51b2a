"""The folder pipeline on one GPU, detection batched across images, against the model card's way:
images and faces per second, their ratio, and how busy the GPU was.

The benchmarks' models, built here and served offline (no network needed): timm caformer_s36
(random weights, 4 classes, 384 x 384, in the published layout, with a published-style
``model.onnx``) and imgutils' face detector as a YOLOv8s-shaped graph at 640 (the real
architecture and cost; see ``benchmarks/_fixtures.py``). The frames hold 1 or 4 faces (half
each). The ways, alternating round by round in this process, on the same frames:

1. the card's way on the GPU: imgutils' face detector, then the transformers processor and
   model (``trust_remote_code``, ``use_infer_head``) on each crop, one at a time
   (``gpu_performance.card_way``);
2. the folder pipeline, ``score_images_with`` on the ONNX backend with ``device='cuda'``,
   detection image by image (``pipeline.DETECTION_BATCH = 1``);
3. the same as the command line runs it on a GPU: the images the pipeline's workers have
   decoded go to the detectors together (`FaceLocator.locate_batch`, up to ``--detect-batch``
   a call), several images per run of the detector.

The detectors run on the GPU too (``ONNX_MODE=gpu``, as imgutils picks a provider). The GPU's
busy share is its ``utilization.gpu`` (pynvml where installed, else ``nvidia-smi``) sampled
every 0.2 s while a way runs. Needs onnxruntime-gpu for the ONNX backend on CUDA::

    pip install -e '.[test]' onnxruntime-gpu
    python -m benchmarks.experiments.gpu_pipeline [--images 96] [--rounds 3] [--output-dir DIR]

Writes ``gpu_pipeline.json`` and ``gpu_pipeline.md`` (default ``benchmarks/results``). On a
machine without a GPU, ``--device cpu --images 4`` runs the same steps (a check of the script).
"""
import argparse
import os
import platform
import shutil
import statistics
import subprocess
import threading
import time
import warnings

from benchmarks import _fixtures  # noqa: F401  (sets the offline environment first)
from benchmarks._fixtures import CAFORMER_REPO, ROOT, WORK, build_hub, write_frames
from benchmarks._results import machine, write_results
from benchmarks.experiments.gpu_performance import card_way, synchronizer

RESULTS = os.path.join(ROOT, 'benchmarks', 'results')
CARD = "card's way"
PER_IMAGE = 'folder pipeline, detection image by image'
BATCHED = 'folder pipeline, detection batched'


# --- the GPU's busy share -----------------------------------------------------------------


def utilization_reader(device: str):
    """A call giving the GPU's ``utilization.gpu`` in percent (pynvml, else nvidia-smi), or None without one."""
    if not device.startswith('cuda'):
        return None
    index = int(device.split(':')[1]) if ':' in device else 0
    visible = os.environ.get('CUDA_VISIBLE_DEVICES', '').split(',')
    if visible[0].strip().isdigit():  # nvidia-smi and NVML count every GPU of the machine
        index = int(visible[index].strip())
    try:
        import pynvml
        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        return lambda: float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
    except Exception:  # noqa: BLE001 - not installed, or no NVML: nvidia-smi then
        pass
    if shutil.which('nvidia-smi') is None:
        return None
    command = ['nvidia-smi', f'--id={index}', '--query-gpu=utilization.gpu', '--format=csv,noheader,nounits']
    return lambda: float(subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()[0])


class BusyShare:
    """Samples the GPU's utilisation every ``interval`` seconds while the ``with`` block runs."""

    def __init__(self, read, interval: float = 0.2):
        self.read, self.interval, self.samples = read, interval, []
        self._stop = threading.Event()

    def _poll(self):
        while not self._stop.wait(self.interval):
            try:
                self.samples.append(self.read())
            except Exception:  # noqa: BLE001 - a missed sample is not worth the run
                pass

    def __enter__(self):
        if self.read is not None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.read is not None:
            self._stop.set()
            self._thread.join()


# --- the ways -----------------------------------------------------------------------------


def pipeline_ways(device: str, backend: str, detect_batch: int) -> tuple:
    """The folder pipeline as the command line runs it, detecting image by image
    (``pipeline.DETECTION_BATCH = 1``) and with the images its workers have decoded going to
    the detectors together (up to ``detect_batch`` a call, as it does on a GPU); and the sizes
    of the batched way's detector calls."""
    from imgutils_facequal import load_face_quality_detector, pipeline
    from imgutils_facequal.pipeline import find_images, score_images_with
    model_name = CAFORMER_REPO if backend == 'onnx' else _fixtures.CAFORMER_NO_ONNX_REPO
    faces = load_face_quality_detector(model_name, backend=backend, device=device)
    batches = []
    locate_batch = faces.locator.locate_batch

    def recording(images):
        batches.append(len(images))
        return locate_batch(images)
    faces.locator.locate_batch = recording

    def run(batch: int):
        def go(paths):
            before, pipeline.DETECTION_BATCH = pipeline.DETECTION_BATCH, batch
            try:
                return sum(len(result.faces) for result in score_images_with(faces, find_images(paths)))
            finally:
                pipeline.DETECTION_BATCH = before
        return go
    return {PER_IMAGE: run(1), BATCHED: run(detect_batch)}, batches, faces.classifier


def measure(ways: dict, frames, expected_faces: int, rounds: int, device: str) -> dict:
    """Seconds of each way over the frames (rounds alternating), and the GPU's busy share while it ran."""
    synchronize = synchronizer(device)
    read = utilization_reader(device)
    seconds = {name: [] for name in ways}
    busy = {name: BusyShare(read) for name in ways}
    for number in range(rounds):
        for name, run in ways.items():
            synchronize()
            with busy[name]:
                started = time.perf_counter()
                found = run(frames)
                synchronize()
                seconds[name].append(time.perf_counter() - started)
            assert found == expected_faces, (name, found, expected_faces)
        print(f'round {number + 1}:', {name: round(values[-1], 3) for name, values in seconds.items()}, flush=True)
    table = {}
    for name, values in seconds.items():
        median = statistics.median(values)
        samples = busy[name].samples
        table[name] = {'seconds': values, 'images_per_s': len(frames) / median, 'faces_per_s': expected_faces / median,
                       'gpu_busy_share': statistics.mean(samples) / 100 if samples else None,
                       'gpu_samples': len(samples)}
    for row in table.values():
        row['vs_card'] = row['faces_per_s'] / table[CARD]['faces_per_s']
    return table


def markdown(report: dict) -> str:
    info = report['machine']
    lines = [f"GPU: {info['gpu']}; CPU: {info['cpu']}, {info['cpus']} cores; torch {info['torch']}, onnxruntime "
             f"{info['onnxruntime']} ({', '.join(info['onnxruntime_providers'])}); Python {info['python']}.",
             f"{report['images']} frames (640 x 384, half with 1 face and half with 4), {report['faces']} faces; "
             f"classifier backend {report['backend']!r} on {report['device']!r}; face detector YOLOv8s-shaped at 640; "
             f"{report['rounds']} rounds, medians; {report['seconds_total']:.0f} s in all.", '',
             '| way | images/s | faces/s | ÷ card | GPU busy |', '|---|---|---|---|---|']
    for name, row in report['ways'].items():
        busy = f"{100 * row['gpu_busy_share']:.0f} %" if row['gpu_busy_share'] is not None else 'n/a'
        lines.append(f"| {name} | {row['images_per_s']:.1f} | {row['faces_per_s']:.1f} | {row['vs_card']:.2f} × | "
                     f'{busy} |')
    batches = report['detection_batches']
    if batches:
        lines += ['', f"Batched detection ran {len(batches)} detector batches, {statistics.mean(batches):.1f} images "
                      f"each on average (largest {max(batches)}, at most {report['detect_batch']})."]
    return '\n'.join(lines) + '\n'


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--images', type=int, default=96, help='frames, half with 1 face and half with 4')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--device', default='cuda', help='cuda, cuda:1... (cpu: a check of the script)')
    parser.add_argument('--backend', default='onnx', choices=['onnx', 'transformers'],
                        help="the pipeline's classifier backend")
    parser.add_argument('--detect-batch', type=int, default=8, help='images per detector run at most')
    parser.add_argument('--output-dir', default=RESULTS)
    args = parser.parse_args()
    started = time.perf_counter()
    warnings.filterwarnings('ignore')
    on_gpu = args.device.startswith('cuda')
    os.environ['ONNX_MODE'] = 'gpu' if on_gpu else 'cpu'  # the detectors' provider, read when a session opens
    import onnxruntime
    import torch
    providers = onnxruntime.get_available_providers()
    if on_gpu:
        if not torch.cuda.is_available():
            raise SystemExit(f'--device {args.device}: torch sees no CUDA device.')
        if 'CUDAExecutionProvider' not in providers:
            raise SystemExit(f'onnxruntime {onnxruntime.__version__} has no CUDA provider ({providers}): install '
                             f'onnxruntime-gpu (and uninstall onnxruntime first if both are installed).')
        if hasattr(onnxruntime, 'preload_dlls'):
            onnxruntime.preload_dlls()  # CUDA and cuDNN from the nvidia-* wheels torch brought
        torch.backends.cudnn.benchmark = True
    if _fixtures.DETECTORS != 'yolo':
        raise SystemExit('Run with the YOLOv8-shaped detectors (unset FACEQUAL_BENCH_DETECTORS).')
    build_hub(published_onnx=args.backend == 'onnx')
    print(f'models built or found in {WORK} ({time.perf_counter() - started:.0f} s)', flush=True)
    frames = (write_frames(os.path.join(WORK, 'gpu-pipeline-1'), args.images // 2, 1)
              + write_frames(os.path.join(WORK, 'gpu-pipeline-4'), args.images - args.images // 2, 4))
    faces = args.images // 2 + 4 * (args.images - args.images // 2)
    pipelines, batches, classifier = pipeline_ways(args.device, args.backend, args.detect_batch)
    if on_gpu and args.backend == 'onnx' and not classifier.runs_on_gpu:
        raise SystemExit(f'The ONNX classifier session runs on {classifier.session.get_providers()}, not CUDA.')
    ways = {CARD: card_way(args.device), **pipelines}
    for run in ways.values():
        run(frames[:4])  # warm-up: models loaded, sessions and kernels made
    batches.clear()
    table = measure(ways, frames, faces, args.rounds, args.device)
    info = machine()
    report = {
        'machine': {**info, 'gpu': torch.cuda.get_device_name(args.device) if on_gpu else 'none',
                    'torch': torch.__version__, 'onnxruntime': onnxruntime.__version__,
                    'onnxruntime_providers': providers, 'python': platform.python_version()},
        'device': args.device, 'backend': args.backend, 'images': len(frames), 'faces': faces, 'rounds': args.rounds,
        'detect_batch': args.detect_batch, 'detection_batches': list(batches), 'ways': table,
    }
    report['seconds_total'] = time.perf_counter() - started
    write_results(args.output_dir, 'gpu_pipeline', report, markdown(report))


if __name__ == '__main__':
    main()
