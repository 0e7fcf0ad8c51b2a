"""The folder path (pipeline and CLI) against the Python API called image by image.

Same images, same random-weight caformer_s36 (384 x 384), same tiny detectors; the
classifier dominates the cost. Usage: ``python benchmarks/cli_vs_api.py [--images 24]``.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import _fixtures  # noqa: F401  (sets the offline environment first)
from _fixtures import CAFORMER_REPO, ROOT, WORK, build_hub, write_frames


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--images', type=int, default=24)
    parser.add_argument('--faces', type=int, default=2)
    parser.add_argument('--out', default=os.path.join(ROOT, 'benchmarks', 'results', 'cli_vs_api.json'))
    args = parser.parse_args()
    build_hub()
    folder = os.path.join(WORK, f'frames-{args.images}-{args.faces}')
    paths = write_frames(folder, args.images, args.faces)

    from imgutils_facequal import detect_face_quality
    from imgutils_facequal.pipeline import find_images, score_images
    detect_face_quality(paths[0], model_name=CAFORMER_REPO)  # load models once, outside the timings

    started = time.perf_counter()
    api_faces = sum(len(detect_face_quality(path, model_name=CAFORMER_REPO)) for path in paths)
    api_seconds = time.perf_counter() - started

    started = time.perf_counter()
    pipeline_faces = sum(len(result.faces) for result in score_images(find_images([folder]), model_name=CAFORMER_REPO))
    pipeline_seconds = time.perf_counter() - started

    output = os.path.join(WORK, 'cli-scores.jsonl')
    if os.path.exists(output):
        os.remove(output)
    script = os.path.join(os.path.dirname(sys.executable), 'imgutils-facequal')
    started = time.perf_counter()
    subprocess.run([script, 'score', folder, '-o', output, '--model', CAFORMER_REPO, '-q'], check=True)
    cli_seconds = time.perf_counter() - started
    with open(output) as f:
        cli_faces = sum(1 for line in f if json.loads(line).get('face') is not None)

    assert api_faces == pipeline_faces == cli_faces == args.images * args.faces
    report = {
        'images': args.images, 'faces_per_image': args.faces, 'classifier': 'caformer_s36 384x384 random weights',
        'api_image_by_image_images_per_s': args.images / api_seconds,
        'pipeline_images_per_s': args.images / pipeline_seconds,
        'cli_images_per_s_including_start': args.images / cli_seconds,
        'pipeline_vs_api': api_seconds / pipeline_seconds,
        'cli_vs_api': api_seconds / cli_seconds,
        'cpus': os.cpu_count(),
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(report, f, indent=2)
    print(json.dumps(report, indent=2))


if __name__ == '__main__':
    main()
