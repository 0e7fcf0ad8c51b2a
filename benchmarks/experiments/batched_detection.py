"""Detection batched across images: seconds per image of one face-detector pass, one image a
run against 4 and 8 images a run, on this machine's CPU.

The detector is the benchmarks' YOLOv8s-shaped ``face_detect_v1.4_s`` at 640 x 640 (the real
architecture and cost, random weights, detections fed from the image's colours; see
``benchmarks/_fixtures.py``), served offline. The ways, alternating round by round in one
process, each on the same frames:

* imgutils' ``detect_faces``, one image a call (what the package runs by default);
* the package's own session of the same ``model.onnx`` (`YoloSession.predict`), one image a run;
* `YoloSession.predict_batch` with ``max_batch`` 4 and 8: several images a run.

Every way's detections are checked to be the same before anything is timed. Each round waits
(up to a minute) for the load average to fall under the core count, and the table gives the
load seen and each way's ratio to one image a run within each round (on a shared machine
the rounds drift more than the ways differ). Usage (from the repository root)::

    python -m benchmarks.experiments.batched_detection [--rounds 5] [--images 8]
"""
import argparse
import os
import statistics
import time

from benchmarks import _fixtures  # noqa: F401  (sets the offline environment first)
from benchmarks._fixtures import WORK, build_hub, write_frames
from benchmarks._results import machine
from benchmarks.performance import wait_for_quiet

MODEL = 'face_detect_v1.4_s'


def ways(frames) -> dict:
    """Each way of detecting every frame, as a call returning one list of detections per frame."""
    from imgutils_facequal._imgutils import detect_module
    from imgutils_facequal.plugins.builtin.yolo_sessions import yolo_session
    from tests.support.fake_hub import FACE_DETECTOR_REPO
    imgutils = detect_module()
    session = yolo_session(FACE_DETECTOR_REPO, MODEL)
    assert session.dynamic_batch, 'the benchmark detector has a fixed batch axis: rebuild its work folder'
    return {
        "imgutils' detect_faces, 1 image a run": lambda: [imgutils.detect_faces(frame, model_name=MODEL)
                                                          for frame in frames],
        'own session, 1 image a run': lambda: [session.predict(frame) for frame in frames],
        'own session, 4 images a run': lambda: session.predict_batch(frames, max_batch=4),
        'own session, 8 images a run': lambda: session.predict_batch(frames, max_batch=8),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--images', type=int, default=8, help='frames per round (640 x 384, 4 faces each)')
    args = parser.parse_args()
    if _fixtures.DETECTORS != 'yolo':
        raise SystemExit('Run with the YOLOv8-shaped detectors (unset FACEQUAL_BENCH_DETECTORS).')
    build_hub(with_caformer=False)
    from imgutils_facequal.images import load_rgb_image
    frames = [load_rgb_image(path) for path in write_frames(os.path.join(WORK, 'batched-detection'), args.images, 4)]
    calls = ways(frames)
    expected = None
    for name, call in calls.items():  # warm-up, and the check that every way finds the same
        found = call()
        expected = found if expected is None else expected
        assert found == expected, f'{name} finds other boxes than one image at a time'
    assert all(expected), 'no faces found: the frames do not match the detector'
    seconds = {name: [] for name in calls}
    loads = []
    for _ in range(args.rounds):
        loads.append(wait_for_quiet(60.0))
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            seconds[name].append((time.perf_counter() - started) / len(frames))
    info = machine()
    print(f"{info['cpu']}, {info['cpus']} cores ({', '.join(info.get('features', []))}); onnxruntime threads: "
          f"{os.environ.get('IMGUTILS_FACEQUAL_THREADS') or info['cpus']}; {args.rounds} rounds of {len(frames)} "
          f"frames; load average before the rounds {min(loads):.1f} to {max(loads):.1f}")
    base = seconds['own session, 1 image a run']
    print('| way | s per image, median | min to max | ÷ own session, 1 a run: of the medians | '
          'in each round, median (min to max) |')
    print('|---|---|---|---|---|')
    for name, values in seconds.items():
        median = statistics.median(values)
        ratios = [value / one for value, one in zip(values, base)]  # the same round: the same load, near enough
        print(f'| {name} | {median:.3f} | {min(values):.3f} to {max(values):.3f} | '
              f'{median / statistics.median(base):.2f} | {statistics.median(ratios):.2f} '
              f'({min(ratios):.2f} to {max(ratios):.2f}) |')


if __name__ == '__main__':
    main()
