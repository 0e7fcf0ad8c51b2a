"""Scoring on Ray Data against the in-process pipeline, on the same images, with detectors of the real cost.

The models are the benchmarks' usual stand-ins (`benchmarks._fixtures`): a random-weight
caformer_s36 at 384 x 384 in the published layout, and imgutils' detectors as YOLOv8s graphs
at 640 whose detections come from the image's colours, so both paths find the same faces.

Measured, on the same ``--images`` frames (``--faces`` faces each):

* the in-process pipeline (`imgutils_facequal.score_images_with`), after a warm-up, with
  every session on every core;
* `imgutils_facequal.ray.score_dataset` on a local cluster of ``--logical-cpus`` logical
  CPUs: one actor with as many CPUs as the machine has cores, then two actors of half as
  many each (``--oversubscribed``: also two of as many CPUs as cores, twice the threads). The driver
  reads the rows as the command does (``iter_batches``). Start-up (``ray.init``; actors
  loading and warming their models, up to the first block of rows) is reported apart from
  the steady rate (images after the first block over the time after it).

The rows of every Ray run are checked against the in-process ones (same faces, largest
score difference).

Usage (from the repository root)::

    python -m benchmarks.ray_throughput [--images 200] [--faces 1] [--logical-cpus 5] [--detection heads-320]
        [--oversubscribed]

Writes ``benchmarks/results/ray_throughput.json`` and ``ray_throughput.md``.
"""
import argparse
import os
import time

from benchmarks import _fixtures  # noqa: F401  (sets the offline environment first)
from benchmarks._fixtures import CAFORMER_REPO, ROOT, WORK, build_hub, write_frames
from benchmarks._results import machine, write_results

#: Images per call of an actor: small enough for many blocks, so the steady rate is measured after the first.
IMAGES_PER_CALL = 8


def score_map(rows) -> dict:
    return {(row['image'], row['face']): row for row in rows}


#: Detection settings: imgutils' default (face detector, then head detector, at 640), or the
#: head detector alone at 320 (one pass at a quarter of the pixels; see docs/performance.md).
DETECTION = {'default': {}, 'heads-320': {'head_localisation': 'heads', 'head_infer_size': 320}}


def in_process(paths, settings: dict) -> dict:
    from imgutils_facequal import InputImage, load_face_quality_detector, score_images_with
    from imgutils_facequal.store import result_rows
    started = time.perf_counter()
    faces = load_face_quality_detector(CAFORMER_REPO, **settings)
    list(score_images_with(faces, [InputImage(paths[0])]))  # warm-up: every session opened
    loaded = time.perf_counter()
    rows = []
    for result in score_images_with(faces, [InputImage(path) for path in paths]):
        rows.extend(result_rows(result))
    seconds = time.perf_counter() - loaded
    return {'startup_s': round(loaded - started, 2), 'seconds': round(seconds, 2),
            'images_per_s': round(len(paths) / seconds, 3), 'rows': rows}


def on_ray(paths, actors: int, cpus_per_actor: float, settings: dict) -> dict:
    from imgutils_facequal.ray import read_image_folder, score_dataset
    from imgutils_facequal.store import nested_row
    started = time.perf_counter()
    dataset = score_dataset(read_image_folder(paths), actors=actors, cpus_per_actor=cpus_per_actor,
                            images_per_call=IMAGES_PER_CALL, model_name=CAFORMER_REPO, **settings)
    first, images, images_after_first, rows = None, 0, 0, []
    for table in dataset.iter_batches(batch_format='pyarrow', batch_size=None):
        batch_images = len(set(table.column('image').to_pylist()))
        if first is None:
            first = time.perf_counter()
        else:
            images_after_first += batch_images
        images += batch_images
        classes = [name[2:] for name in table.column_names if name.startswith('p_')]
        rows.extend(nested_row(row, classes) for row in table.to_pylist())
    ended = time.perf_counter()
    steady = ended - first
    rate = images_after_first / steady if steady > 0 else None
    first_images = images - images_after_first
    return {'actors': actors, 'cpus_per_actor': cpus_per_actor, 'images': images,
            'to_first_block_s': round(first - started, 2),
            # the wait for the first block, less the time its images take at the steady rate
            'startup_s': round(first - started - first_images / rate, 2) if rate else None,
            'seconds': round(ended - started, 2),
            'steady_images_per_s': round(rate, 3) if rate else None,
            'overall_images_per_s': round(images / (ended - started), 3), 'rows': rows}


def compare(rows, reference) -> dict:
    ours, theirs = score_map(rows), score_map(reference)
    same_faces = sorted(ours) == sorted(theirs)
    largest = max((abs(ours[key]['scores'][name] - row['scores'][name])
                   for key, row in theirs.items() if key in ours and row.get('scores')
                   for name in row['scores']), default=0.0)
    return {'same_faces': same_faces, 'largest_score_difference': largest}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--images', type=int, default=200)
    parser.add_argument('--faces', type=int, default=1, help='faces per image (1 to 4)')
    parser.add_argument('--detection', choices=sorted(DETECTION), default='default',
                        help='default: face then head detector at 640; heads-320: the head detector alone at 320')
    parser.add_argument('--oversubscribed', action='store_true',
                        help='also two actors of as many CPUs as cores (twice the threads of the cores)')
    parser.add_argument('--logical-cpus', type=int, default=5,
                        help='logical CPUs of the local cluster (more than the cores: the read tasks need some)')
    args = parser.parse_args()
    os.environ['PYTHONPATH'] = os.pathsep.join(filter(None, [ROOT, os.environ.get('PYTHONPATH')]))
    build_hub()
    paths = write_frames(os.path.join(WORK, f'ray-frames-{args.faces}'), args.images, args.faces)
    cores = os.cpu_count() or 1

    settings = DETECTION[args.detection]
    reference = in_process(paths, settings)
    print(f'in process: {reference["images_per_s"]} images/s', flush=True)
    import ray
    started = time.perf_counter()
    ray.init(num_cpus=args.logical_cpus, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    init_s = round(time.perf_counter() - started, 2)
    runs = []
    plans = [(1, cores), (2, max(1, cores // 2))] + ([(2, cores)] if args.oversubscribed else [])
    for actors, cpus in plans:
        if args.logical_cpus - actors * cpus < 1:
            continue
        run = on_ray(paths, actors, cpus, settings)
        run.update(compare(run.pop('rows'), reference['rows']))
        run['of_in_process'] = round(run['steady_images_per_s'] / reference['images_per_s'], 3)
        runs.append(run)
        print({key: value for key, value in run.items()}, flush=True)
    ray.shutdown()
    reference.pop('rows')
    report = {'machine': machine(), 'images': args.images, 'faces_per_image': args.faces,
              'logical_cpus': args.logical_cpus, 'detectors': _fixtures.DETECTORS, 'detection': args.detection,
              'load_average_at_end': os.getloadavg()[0] if hasattr(os, 'getloadavg') else None, 'ray_init_s': init_s,
              'in_process': reference, 'ray': runs,
              'command': f'python -m benchmarks.ray_throughput --images {args.images} --faces {args.faces} '
                         f'--logical-cpus {args.logical_cpus} --detection {args.detection}'}
    write_results(os.path.join(ROOT, 'benchmarks', 'results'), 'ray_throughput', report, markdown(report))


def markdown(report: dict) -> str:
    info = report['machine']
    base = report['in_process']
    lines = [
        '# Ray Data against the in-process pipeline', '',
        f'{info.get("cpu")}, {info.get("cpus")} CPUs, {info.get("memory_gb", "?")} GB; {report["images"]} images of '
        f'{report["faces_per_image"]} faces, random-weight caformer_s36 at 384 and {report["detectors"]} detectors '
        f'(YOLOv8s graphs), detection `{report["detection"]}`; a local cluster of {report["logical_cpus"]} logical '
        f'CPUs; load average {report["load_average_at_end"]:.1f} at the end (other work shared the machine). '
        f'`{report["command"]}`', '',
        '| path | actors x CPUs | start-up s | steady images/s | x in-process | overall images/s | same faces | '
        'largest score diff |',
        '|---|---|---|---|---|---|---|---|',
        f'| in process | - | {base["startup_s"]} | {base["images_per_s"]} | 1.000 | '
        f'{base["images_per_s"]} | - | - |',
    ]
    for run in report['ray']:
        lines.append(f'| Ray Data | {run["actors"]} x {run["cpus_per_actor"]:g} | {run["startup_s"]} | '
                     f'{run["steady_images_per_s"]} | {run["of_in_process"]} | '
                     f'{run["overall_images_per_s"]} | {run["same_faces"]} | {run["largest_score_difference"]:.2g} |')
    lines += ['', f'Start-up: in process, the models loading and a warm-up image; on Ray, the wait for the first '
                  f'block of rows less the time its images take at the steady rate (actors start, load and warm '
                  f'their models). `ray.init` took {report["ray_init_s"]} s on top. Steady: images after the first '
                  f'block over the time after it; overall: every image over the whole Ray run, start-up included.',
              '']
    return '\n'.join(lines)


if __name__ == '__main__':
    main()
