"""The run behind docs/performance.md: the model card's way against this package, with
detectors of the real cost.

Everything is the real architecture with random weights, served offline in the published
layout: timm caformer_s36 (4 classes, 384 x 384, a published-style ``model.onnx``) and
imgutils' detectors as YOLOv8s graphs at 640 (``face_detect_v1.4_s``, ``head_detect_v2.0_s``)
plus a YOLOv8n head detector (``head_detect_v2.0_n``), whose detections come from the
image's colours so that every path scores the same faces (`tests.support.yolo_graphs`).

Compared, each in its own process, in alternating rounds, on the same frames (1 and 4
faces per image):

* the card's way: imgutils' ``detect_faces``, then ``AutoImageProcessor`` +
  ``AutoModel`` (``trust_remote_code=True``, ``use_infer_head=True``) on each face crop;
* the package's default ``detect_face_quality`` (the face detector, head boxes estimated from
  the faces, head crops, the ONNX backend), image by image, and the folder pipeline
  (``score_images``, what the command line runs);
* the same two paths with the fast preset (its classifier on OpenVINO, which ``auto`` picks
  where the extra is installed) and with the fast preset on onnxruntime (a plain install's), and on request (``--kinds``) with the other
  detection options (`OPTIONS`).

It also times each stage alone (detection; cropping and preprocessing; classification),
measures how much each option moves the boxes and crops against the default, and states
the bound: the GFLOPs computed per image (detections plus 44.3 per face) over the
machine's fp32 matmul peak.

Usage (from the repository root)::

    python -m benchmarks.performance [--rounds 3] [--images-1 6] [--images-4 3]

Writes ``benchmarks/results/performance.json`` and ``performance.md``.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from benchmarks import _fixtures  # noqa: F401  (sets the offline environment first)
from benchmarks._fixtures import CAFORMER_NO_ONNX_REPO, CAFORMER_REPO, ROOT, WORK, build_hub, matmul_calls
from benchmarks._results import machine, write_results

GFLOP_PER_FACE = 44.3  # the card's figure for caformer_s36 at 384 x 384
RESULTS = os.path.join(ROOT, 'benchmarks', 'results')

#: The options that change detection, as `load_face_quality_detector` arguments.
OPTIONS = {
    'fast': {'head_localisation': 'heads', 'head_level': 'n', 'head_infer_size': 320, 'backend': 'auto'},  # PRESETS
    'fast_onnx': {'head_localisation': 'heads', 'head_level': 'n', 'head_infer_size': 320, 'backend': 'onnx'},
    'paired': {'head_localisation': 'paired'},
    'head_n': {'head_localisation': 'paired', 'head_level': 'n'},
    'head_320': {'head_localisation': 'paired', 'head_infer_size': 320},
    'heads': {'head_localisation': 'heads'},
    'heads_320': {'head_localisation': 'heads', 'head_infer_size': 320},
}
#: The ways timed, each in its own process: the card's, the default and the fast preset, image by image
#: (``detect_face_quality``) and in the folder pipeline the command line runs.
KINDS = ['card', 'default', 'pipeline_default', 'fast', 'pipeline_fast', 'fast_onnx', 'pipeline_fast_onnx']
#: Every way the script knows, for ``--kinds``.
ALL_KINDS = KINDS + ['paired', 'pipeline_paired', 'head_n', 'head_320', 'heads', 'heads_320']
DETECTION_KEYS = ('head_level', 'head_infer_size', 'head_localisation', 'head_detector')
LABELS = {
    'default': "default (face detector, head boxes estimated from faces: head_localisation='estimated')",
    'fast': "fast preset (preset='fast': head_localisation='heads', head_level='n', head_infer_size=320, "
            "backend='auto')",
    'fast_onnx': "fast preset on onnxruntime (as without the openvino extra: backend='onnx')",
    'paired': "face + head detector (head_localisation='paired', the default before 0.2)",
    'head_n': "face + head detector level n (head_localisation='paired', head_level='n')",
    'head_320': "face + head detector at 320 (head_localisation='paired', head_infer_size=320)",
    'heads': "head detector alone (head_localisation='heads')",
    'heads_320': "head detector alone at 320 (head_localisation='heads', head_infer_size=320)",
}
#: Detector graphs each way runs per image, and their size: (level, inference size).
DETECTOR_PASSES = {
    'card': [('s', 640)], 'default': [('s', 640)], 'fast': [('n', 320)], 'paired': [('s', 640), ('s', 640)],
    'head_n': [('s', 640), ('n', 640)], 'head_320': [('s', 640), ('s', 320)], 'heads': [('s', 640)],
    'heads_320': [('s', 320)], 'fast_onnx': [('n', 320)],
}


def versions() -> dict:
    import onnxruntime
    import torch
    result = {'onnxruntime': onnxruntime.__version__, 'torch': torch.__version__}
    try:
        import openvino
        result['openvino'] = openvino.__version__
    except ImportError:
        pass
    return result


def matmul_peak(sizes=(2048, 3072, 4096), rounds=5) -> dict:
    """The best fp32 GFLOP/s of a square matmul over ``sizes``, in numpy and in onnxruntime."""
    best = {'numpy': 0.0, 'onnxruntime': 0.0}
    for size in sizes:
        for name, call in matmul_calls(size).items():
            call()
            times = []
            for _ in range(rounds):
                started = time.perf_counter()
                call()
                times.append(time.perf_counter() - started)
            best[name] = max(best[name], 2 * size ** 3 / statistics.median(times) / 1e9)
    return {**best, 'sizes': list(sizes), 'peak_gflops': max(best.values())}


def detector_gflops() -> dict:
    """GFLOPs of one detector pass (torch's FlopCounterMode on the network), by (level, size)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from tests.support.yolo_graphs import yolov8_module
    result = {}
    for level, size in {pass_ for passes in DETECTOR_PASSES.values() for pass_ in passes}:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            yolov8_module(level)(torch.rand(1, 3, size, size))
        result[f'{level}_{size}'] = counter.get_total_flops() / 1e9
    return result


def frame_groups() -> dict:
    return {faces: sorted(os.path.join(WORK, f'frames-{faces}', name)
                          for name in os.listdir(os.path.join(WORK, f'frames-{faces}')))
            for faces in (1, 4)}


def write_frame_groups(images_1: int, images_4: int) -> None:
    from benchmarks._fixtures import write_frames
    for faces, count in ((1, images_1), (4, images_4)):
        directory = os.path.join(WORK, f'frames-{faces}')
        for name in os.listdir(directory) if os.path.isdir(directory) else []:
            os.remove(os.path.join(directory, name))
        write_frames(directory, count + 1, faces)  # one more, for the warm-up


# --- the ways of scoring ------------------------------------------------------------


def card_way():
    """What a user writes from the card: imgutils' face detector, then processor + model per crop."""
    import torch
    from imgutils.data import load_image
    from imgutils.detect import detect_faces
    from transformers import AutoImageProcessor, AutoModel
    from imgutils_facequal.geometry import crop_box
    processor = AutoImageProcessor.from_pretrained(CAFORMER_NO_ONNX_REPO, trust_remote_code=True)
    model = AutoModel.from_pretrained(CAFORMER_NO_ONNX_REPO, trust_remote_code=True, use_infer_head=True).eval()
    stages = {'detection': 0.0, 'crop_preprocess': 0.0, 'classification': 0.0}

    def run(path):
        started = time.perf_counter()
        image = load_image(path, mode='RGB', force_background='white')
        faces = detect_faces(image)
        detected = time.perf_counter()
        found = 0
        for bbox, _, _ in faces:
            begin = time.perf_counter()
            input_ = processor(image.crop(crop_box(bbox, 0.5, image.size)))['pixel_values']
            middle = time.perf_counter()
            with torch.no_grad():
                found += int(model(input_).shape[0])
            stages['crop_preprocess'] += middle - begin
            stages['classification'] += time.perf_counter() - middle
        stages['detection'] += detected - started
        return found
    return run, stages


def package_way(options: dict):
    """``load_face_quality_detector(**options).detect`` image by image, timing its stages."""
    from imgutils_facequal import load_face_quality_detector
    from imgutils_facequal.images import load_rgb_image
    faces = load_face_quality_detector(CAFORMER_REPO, **options)
    model, locator = faces.classifier, faces.locator
    stages = {'detection': 0.0, 'crop_preprocess': 0.0, 'classification': 0.0}

    def run(path):  # the steps of FaceQualityDetector.detect, one by one
        started = time.perf_counter()
        image = load_rgb_image(path)
        locations = locator.locate(image)
        detected = time.perf_counter()
        inputs, _ = locator.classifier_inputs(image, locations)
        batches = [model.preprocess(inputs[start:start + model.default_batch_size])
                   for start in range(0, len(inputs), model.default_batch_size)]
        prepared = time.perf_counter()
        found = sum(len(model.predict(batch)) for batch in batches)
        stages['detection'] += detected - started
        stages['crop_preprocess'] += prepared - detected
        stages['classification'] += time.perf_counter() - prepared
        return found
    return run, stages


def worker(kind: str) -> dict:
    """One way of scoring, in this fresh process: faces per second on each group of frames."""
    from imgutils_facequal import detect_face_quality, load_face_quality_detector
    from imgutils_facequal.pipeline import find_images, score_images, score_images_with
    pipeline = kind.startswith('pipeline')
    option = kind[len('pipeline_'):] if pipeline else kind
    options = OPTIONS.get(option, {})
    stages = None
    if kind == 'card':
        per_image, stages = card_way()
    elif kind == 'stages':
        return stage_worker(kind)
    elif kind == 'detectors':
        return detector_worker()
    elif kind == 'default':
        def per_image(path):
            return len(detect_face_quality(path, model_name=CAFORMER_REPO))
    elif not pipeline:
        per_image, stages = package_way(options)  # FaceQualityDetector.detect's steps, timed one by one
    if pipeline:
        workers = os.environ.get('FACEQUAL_BENCH_WORKERS')  # the pipeline's own default unless set
        workers = None if workers is None else int(workers)

        def run(paths):
            results = (score_images(find_images(paths), model_name=CAFORMER_REPO, workers=workers)
                       if option == 'default' else
                       score_images_with(load_face_quality_detector(CAFORMER_REPO, **options), find_images(paths),
                                         workers=workers))
            return sum(len(result.faces) for result in results)
    else:
        def run(paths):
            return sum(per_image(path) for path in paths)
    result = {} if kind == 'card' else {
        'backend': load_face_quality_detector(CAFORMER_REPO, **options).classifier.backend}  # what 'auto' ran
    for faces_per_image, paths in frame_groups().items():
        run(paths[:1])  # warm-up: models loaded, sessions created, first calls made
        if stages is not None:
            stages.update(dict.fromkeys(stages, 0.0))
        started = time.perf_counter()
        found = run(paths[1:])
        seconds = time.perf_counter() - started
        assert found == faces_per_image * (len(paths) - 1), (kind, faces_per_image, found)
        result[str(faces_per_image)] = {'seconds': seconds, 'faces': found, 'images': len(paths) - 1}
        if stages is not None:
            result[str(faces_per_image)]['stages'] = {stage: value / (len(paths) - 1) for stage, value in stages.items()}
    return result


def stage_worker(kind: str) -> dict:
    """Seconds per image in each stage, the ways alternating image by image in this process."""
    ways = {'default': package_way({})}
    result = {}
    for faces_per_image, paths in frame_groups().items():
        for run, stages in ways.values():
            run(paths[0])  # warm-up
            stages.update(dict.fromkeys(stages, 0.0))
        for path in paths[1:]:
            for run, _ in ways.values():
                run(path)
        result[str(faces_per_image)] = {name: {stage: seconds / (len(paths) - 1) for stage, seconds in stages.items()}
                                        for name, (_, stages) in ways.items()}
    return result


def detector_worker(calls: int = 5) -> dict:
    """Seconds per image of one face-detector pass by each way of running the same model.onnx,
    alternating call by call: imgutils, our own session (at 640, at 320, batched 4 images a run),
    OpenVINO on the same file, and the ``n`` graph; plus whether our session's detections are imgutils'."""
    import numpy as np
    from huggingface_hub import hf_hub_download
    from imgutils_facequal._imgutils import detect_module
    from imgutils_facequal.images import load_rgb_image
    from imgutils_facequal.plugins.builtin.yolo_sessions import yolo_session
    from tests.support.fake_hub import FACE_DETECTOR_REPO, HEAD_DETECTOR_REPO
    image = load_rgb_image(frame_groups()[4][0])
    imgutils = detect_module()
    ours = yolo_session(FACE_DETECTOR_REPO, 'face_detect_v1.4_s')
    data = (np.asarray(image.resize((640, 640))).transpose(2, 0, 1) / 255.0).astype(np.float32)[None]
    batch = np.concatenate([data] * 4)
    ways = {
        "imgutils' detect_faces": lambda: imgutils.detect_faces(image, model_name='face_detect_v1.4_s'),
        'own onnxruntime session, 640': lambda: ours.predict(image),
        'own onnxruntime session, 320': lambda: ours.predict(image, infer_size=320),
        'own onnxruntime session, 4 images in one run (per image)': lambda: ours.session.run(
            ['output0'], {'images': batch}),
        "n graph (head_detect_v2.0_n), 640": lambda: yolo_session(HEAD_DETECTOR_REPO, 'head_detect_v2.0_n').predict(
            image),
    }
    try:
        import openvino
        core = openvino.Core()
        path = hf_hub_download(FACE_DETECTOR_REPO, 'face_detect_v1.4_s/model.onnx')
        request = core.compile_model(core.read_model(path), 'CPU', {'PERFORMANCE_HINT': 'LATENCY'}) \
            .create_infer_request()
        ways['OpenVINO on the same model.onnx, 640'] = lambda: request.infer({0: data})
    except ImportError:
        pass
    times = {name: [] for name in ways}
    for name, call in ways.items():
        call()
    for _ in range(calls):
        for name, call in ways.items():
            started = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - started)
    result = {name: statistics.median(values) for name, values in times.items()}
    result['own onnxruntime session, 4 images in one run (per image)'] /= 4
    identical = ours.predict(image) == imgutils.detect_faces(image, model_name='face_detect_v1.4_s')
    return {'seconds_per_image': result, 'own_session_identical_to_imgutils': identical}


def wait_for_quiet(limit: float = 10.0) -> float:
    """Wait (up to ``limit`` seconds) until the 1-minute load average is under the core count
    plus a half, so that no way is timed while other work floods the machine; returns the load."""
    deadline = time.monotonic() + limit
    while os.getloadavg()[0] > (os.cpu_count() or 1) + 0.5 and time.monotonic() < deadline:
        time.sleep(5)
    return os.getloadavg()[0]


def run_worker(kind: str) -> dict:
    load = wait_for_quiet()
    output = subprocess.run([sys.executable, '-m', 'benchmarks.performance', '--worker', kind], cwd=ROOT,
                            capture_output=True, text=True)
    if output.returncode:
        raise RuntimeError(f'worker {kind} failed:\n{output.stderr[-4000:]}')
    result = json.loads(output.stdout.strip().splitlines()[-1])
    result['load_before'] = load
    return result


# --- what the options change --------------------------------------------------------


def iou(a, b) -> float:
    from imgutils_facequal.geometry import box_area, intersection_area
    shared = intersection_area(a, b)
    return shared / (box_area(a) + box_area(b) - shared) if shared else 0.0


def geometry_frames():
    """The benchmark's frames, plus frames with what the options treat differently: a face
    whose head the head detector cannot see, and a head with no face (seen from behind)."""
    from PIL import ImageDraw
    from tests.support.fake_hub import CLASS_COLOURS, HEAD_GREY, HEAD_GRID, cell_box, draw_scene
    from imgutils_facequal.images import load_rgb_image
    frames = [load_rgb_image(path) for paths in frame_groups().values() for path in paths]
    image, _ = draw_scene((640, 384), heads=[(0, 0, CLASS_COLOURS['good'])], bare_faces=[(5, 1, CLASS_COLOURS['ok'])])
    back = cell_box(2, 2, HEAD_GRID, image.size)
    ImageDraw.Draw(image).rectangle((back[0], back[1], back[2] - 1, back[3] - 1), fill=HEAD_GREY)
    return frames + [image]


def _mean(values) -> float:
    return statistics.mean(values) if values else 0.0


def changes() -> dict:
    """Each option's boxes and crops against the default's, face by face: matched by face box where the
    option runs the face detector, by crop (IoU 0.3 or more) where it finds faces through their heads."""
    from imgutils_facequal import FaceLocator
    frames = geometry_frames()
    default = [FaceLocator().locate(frame) for frame in frames]
    result = {}
    for name, options in OPTIONS.items():
        if name == 'fast_onnx' or not any(key in options for key in DETECTION_KEYS):  # fast_onnx: fast's boxes
            continue
        key, least = ('crop_bbox', 0.3) if options.get('head_localisation') == 'heads' else ('bbox', 0.5)
        locator = FaceLocator(**{key: value for key, value in options.items() if key in DETECTION_KEYS})
        matched, missed, extra, face_iou, head_iou, crop_iou, identical = 0, 0, 0, [], [], [], 0
        for frame, expected in zip(frames, default):
            found = locator.locate(frame)
            used = set()
            for face in expected:
                best = max(((iou(getattr(face, key), getattr(other, key)), index)
                            for index, other in enumerate(found) if index not in used), default=(0.0, None))
                if best[1] is None or best[0] < least:
                    missed += 1
                    continue
                other = found[best[1]]
                used.add(best[1])
                matched += 1
                face_iou.append(iou(face.bbox, other.bbox))
                head_iou.append(iou(face.head_bbox, other.head_bbox))
                crop_iou.append(iou(face.crop_bbox, other.crop_bbox))
                identical += face.crop_bbox == other.crop_bbox and face.bbox == other.bbox
            extra += len(found) - len(used)
        result[name] = {'faces_in_default': sum(map(len, default)), 'matched': matched, 'missed': missed,
                        'extra': extra, 'identical_boxes_and_crops': identical,
                        'min_face_iou': min(face_iou, default=0.0), 'mean_face_iou': _mean(face_iou),
                        'min_head_iou': min(head_iou, default=0.0), 'min_crop_iou': min(crop_iou, default=0.0),
                        'mean_crop_iou': _mean(crop_iou)}
    return result


# --- the run ------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--images-1', type=int, default=6, help='frames with one face (timed)')
    parser.add_argument('--images-4', type=int, default=3, help='frames with four faces (timed)')
    parser.add_argument('--kinds', nargs='*', default=KINDS, choices=ALL_KINDS,
                        help='ways to time (default: the card, the default and the fast preset; card is needed)')
    parser.add_argument('--report-only', action='store_true',
                        help="write the report from the last run's raw timings (in the work folder) again")
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker)))
        return
    raw_path = os.path.join(WORK, 'performance-raw.json')
    if args.report_only:
        with open(raw_path) as f:
            raw = json.load(f)
        report, measured, stage_runs, detector_runs = raw['report'], raw['measured'], raw['stage_runs'], \
            raw['detector_runs']
    else:
        build_hub()
        write_frame_groups(args.images_1, args.images_4)
        from imgutils_facequal import load_face_quality_model
        load_face_quality_model(CAFORMER_REPO)  # rewrites the published graph once, into the cache every worker reads
        report = {'machine': machine(), 'versions': versions(), 'rounds': args.rounds,
                  'images': {'1': args.images_1, '4': args.images_4}, 'matmul_start': matmul_peak()}
        kinds = args.kinds
        measured = {kind: [] for kind in kinds}
        stage_runs = {'stages': []}
        detector_runs = []

        def save():  # the raw timings so far, so that a report can be written again (--report-only)
            with open(raw_path, 'w') as f:
                json.dump({'report': report, 'measured': measured, 'stage_runs': stage_runs,
                           'detector_runs': detector_runs}, f)
        for round_ in range(args.rounds):
            order = kinds if round_ % 2 == 0 else list(reversed(kinds))
            for kind in order:
                measured[kind].append(run_worker(kind))
                print(f'round {round_ + 1}: {kind} {measured[kind][-1]}', file=sys.stderr, flush=True)
                save()
            for kind in stage_runs:
                stage_runs[kind].append(run_worker(kind))
            if not detector_runs:
                detector_runs.append(run_worker('detectors'))
            save()
        report['matmul_end'] = matmul_peak()
        save()
    # a run stopped early (--report-only): the rounds every way completed, so all ways face the same minutes
    report.setdefault('matmul_end', report['matmul_start'])
    report['rounds'] = min(len(runs) for runs in measured.values())
    measured = {kind: runs[:report['rounds']] for kind, runs in measured.items()}
    stage_runs = {kind: runs[:report['rounds']] for kind, runs in stage_runs.items()}
    report['backends'] = {kind: runs[0].get('backend') for kind, runs in measured.items() if runs}
    report['load_before_each_way'] = {kind: [run.get('load_before') for run in runs] for kind, runs in measured.items()}
    peak = max(report['matmul_start']['peak_gflops'], report['matmul_end']['peak_gflops'])
    report['detector_gflops'] = gflops = detector_gflops()
    paths = {}
    for kind, runs in measured.items():
        row = paths[kind] = {}
        for faces in ('1', '4'):
            rates = [run[faces]['faces'] / run[faces]['seconds'] for run in runs]
            row[faces] = {'faces_per_s': statistics.median(rates), 'rounds': rates}
    for kind, row in paths.items():
        option = kind[len('pipeline_'):] if kind.startswith('pipeline_') else kind
        for faces in ('1', '4'):
            cell = row[faces]
            cell['vs_card'] = cell['faces_per_s'] / paths['card'][faces]['faces_per_s']
            per_image = sum(gflops[f'{level}_{size}'] for level, size in DETECTOR_PASSES[option]) \
                + GFLOP_PER_FACE * int(faces)
            cell['gflop_per_image'] = per_image
            cell['bound_faces_per_s'] = int(faces) * peak / per_image
            cell['share_of_bound'] = cell['faces_per_s'] / cell['bound_faces_per_s']
    report['paths'] = paths
    report['peak_gflops'] = peak
    stages = {}
    for faces in ('1', '4'):  # the default's from the stage worker, the others' from their own runs
        runs = stage_runs['stages']
        stages.setdefault(faces, {})['default'] = {stage: statistics.median(run[faces]['default'][stage]
                                                                            for run in runs)
                                                   for stage in runs[0][faces]['default']}
        for kind, runs in measured.items():
            if 'stages' in runs[0][faces]:
                stages[faces][kind] = {stage: statistics.median(run[faces]['stages'][stage] for run in runs)
                                       for stage in runs[0][faces]['stages']}
    report['stages'] = stages
    report['detector_runtimes'] = {
        'seconds_per_image': {name: statistics.median(run['seconds_per_image'][name] for run in detector_runs)
                              for name in detector_runs[0]['seconds_per_image']},
        'own_session_identical_to_imgutils': all(run['own_session_identical_to_imgutils'] for run in detector_runs)}
    report['changes'] = changes()
    write_results(RESULTS, 'performance', report, markdown(report))


def markdown(report: dict) -> str:
    info, paths = report['machine'], report['paths']
    features = ', '.join(info.get('features', []))
    lines = [f"Machine: {info['cpu']}, {info['cpus']} CPUs ({features}), Python {info['python']}, "
             + ', '.join(f'{name} {version}' for name, version in report['versions'].items()) + '.',
             f"Detectors of the real cost (YOLOv8s at 640, random weights); caformer_s36 at 384, random weights. "
             f"{report['rounds']} rounds, each way in its own process, alternating; medians; ratios from this run. "
             f"1-minute load average before each way: {min(l for v in report['load_before_each_way'].values() for l in v if l is not None):.1f} "
             f"to {max(l for v in report['load_before_each_way'].values() for l in v if l is not None):.1f} on {info['cpus']} cores. "
             f"Timed frames: {report['images']['1']} with one face, {report['images']['4']} with four.", '',
             '| way | 1 face: faces/s | ÷ card | share of bound | 4 faces: faces/s | ÷ card | share of bound |',
             '|---|---|---|---|---|---|---|']

    def label(kind):
        if kind == 'card':
            return "card's way (face detector, transformers per crop)"
        ran = report.get('backends', {}).get(kind)
        ran = f' [ran on {ran}]' if ran else ''
        if kind.startswith('pipeline_'):
            return f"folder pipeline, {LABELS[kind[len('pipeline_'):]]}{ran}"
        return f"detect_face_quality, {LABELS[kind]}{ran}"
    for kind, row in paths.items():
        cells = []
        for faces in ('1', '4'):
            cell = row[faces]
            cells += [f"{cell['faces_per_s']:.2f}", f"{cell['vs_card']:.2f}x", f"{100 * cell['share_of_bound']:.0f}%"]
        lines.append(f"| {label(kind)} | " + ' | '.join(cells) + ' |')
    matmul = report['matmul_start'], report['matmul_end']
    lines += ['', f"fp32 matmul peak (best of numpy and onnxruntime, {', '.join(f'{n}²' for n in matmul[0]['sizes'])}): "
              f"{matmul[0]['peak_gflops']:.0f} GFLOP/s at the start, {matmul[1]['peak_gflops']:.0f} at the end; the "
              f"bound uses {report['peak_gflops']:.0f}. GFLOP per detector pass (torch's FlopCounterMode): "
              + ', '.join(f'{key.replace("_", " at ")}: {value:.1f}' for key, value in report['detector_gflops'].items())
              + f"; {GFLOP_PER_FACE} per face (the card's). Bound = faces × peak ÷ GFLOP computed per image.", '',
              'Seconds per image in each stage, timed inside each way\'s own runs above (the default\'s in a '
              'process of its own running the steps of `FaceQualityDetector.detect` one by one); medians of the '
              'rounds. The last column is the ceiling no detection option can pass: the card\'s time per image '
              'against this way\'s crops and classification alone, as if its detection took no time.', '',
              '| way | faces | detection | crop + preprocess | classification | ÷ card if detection were free |',
              '|---|---|---|---|---|---|']
    for faces, rows in report['stages'].items():
        card = sum(rows['card'].values()) if 'card' in rows else None
        for name, row in rows.items():
            ceiling = f"{card / (row['crop_preprocess'] + row['classification']):.2f}x" if card else ''
            lines.append(f"| {'card' if name == 'card' else LABELS[name]} | {faces} | {row['detection']:.3f} | "
                         f"{row['crop_preprocess']:.3f} | {row['classification']:.3f} | {ceiling} |")
    runtimes = report['detector_runtimes']
    lines += ['', 'One face-detector pass (YOLOv8s graph, one frame), each way of running the same model.onnx, '
              'call by call in one process, medians:', '', '| runtime | s per image |', '|---|---|']
    lines += [f'| {name} | {seconds:.3f} |' for name, seconds in runtimes['seconds_per_image'].items()]
    lines += ['', 'Our own session\'s detections identical to imgutils\': '
              f"{'yes' if runtimes['own_session_identical_to_imgutils'] else 'NO'}."]
    lines += ['', 'Detector graphs run by each way, per image: ' + '; '.join(
        f"{name}: " + ' + '.join(f'{level} at {size}' for level, size in passes)
        for name, passes in DETECTOR_PASSES.items()) + '.']
    lines += ['', 'What each option changes against the default, on the benchmark frames plus one frame with a face '
              'whose head is not detectable and a head with no face (faces matched by face box, or by head box '
              'where the option finds faces through their heads):', '',
              '| option | faces (default) | matched | missed | extra | identical box and crop | min face IoU '
              '| min head IoU | min crop IoU |', '|---|---|---|---|---|---|---|---|---|']
    for name, row in report['changes'].items():
        lines.append(f"| {LABELS[name]} | {row['faces_in_default']} | {row['matched']} | {row['missed']} | "
                     f"{row['extra']} | {row['identical_boxes_and_crops']} | {row['min_face_iou']:.2f} | "
                     f"{row['min_head_iou']:.2f} | {row['min_crop_iou']:.2f} |")
    return '\n'.join(lines) + '\n'


if __name__ == '__main__':
    main()
