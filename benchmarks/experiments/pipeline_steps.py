"""Each CPU-side step of the folder pipeline alone, fed from 1 and from 8 threads.

Decoding, the detectors (in the calling threads at the same time, one at a time behind a
lock, and handed to one thread of their own as ``score_images`` does) and the
repository's preprocessing, on one-face frames of the benchmark's test hub. It tells
which step limits the pipeline when the classifier runs on a GPU. Usage::

    python -m benchmarks.experiments.pipeline_steps [--device cuda] [--images 96]
"""
import argparse
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from benchmarks import _fixtures  # noqa: F401  (sets the offline environment first)
from benchmarks._fixtures import CAFORMER_NO_ONNX_REPO, WORK, build_hub, write_frames


def images_per_second(step, count: int, threads: int) -> float:
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(step, range(min(16, count))))  # warm-up: sessions opened in these threads
        started = time.perf_counter()
        list(pool.map(step, range(count)))
        return count / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cuda')
    parser.add_argument('--images', type=int, default=96)
    args = parser.parse_args()
    import numpy as np
    build_hub(published_onnx=False)
    from imgutils_facequal import load_face_quality_model
    from imgutils_facequal import FaceLocator
    locate_faces = FaceLocator().locate
    from imgutils_facequal.images import load_rgb_image
    paths = write_frames(os.path.join(WORK, 'steps-1face'), args.images, 1)
    model = load_face_quality_model(CAFORMER_NO_ONNX_REPO, backend='transformers', device=args.device)
    images = [load_rgb_image(path) for path in paths]
    crops = [image.crop(locate_faces(image)[0].crop_bbox) for image in images]
    lock = threading.Lock()
    detection_thread = ThreadPoolExecutor(1)

    def detect_behind_lock(index):
        with lock:
            return locate_faces(images[index])

    steps = {
        'decoding': lambda index: load_rgb_image(paths[index]),
        'detection, in the calling threads at the same time': lambda index: locate_faces(images[index]),
        'detection, one at a time behind a lock': detect_behind_lock,
        'detection, handed to one thread of its own': lambda index: detection_thread.submit(
            locate_faces, images[index]).result(),
        "preprocessing, the repository's processor": lambda index: np.asarray(model.preprocess([crops[index]])),
    }
    print(f'{os.cpu_count()} CPU cores; images per second:')
    for name, step in steps.items():
        print(f'{name}: ' + ', '.join(f'from {threads} threads {images_per_second(step, len(paths), threads):.0f}'
                                      for threads in (1, 8)), flush=True)


if __name__ == '__main__':
    main()
