"""Parity of the backends and the export on the published architecture (not run in CI).

Builds a randomly initialised timm ``caformer_s36`` (4 classes, 384 x 384) laid out like
a published repository (remote code, ``save_pretrained``, an ``ImgutilsBasedImageProcessor``
and a ``model.onnx`` exported the way the publisher does), serves it from a temporary
Hugging Face cache with ``HF_HUB_OFFLINE=1``, and measures on varied images:

* pillow stages (ONNX path) against torchvision stages (the card's processor);
* the ONNX backend against the transformers backend, per class probability;
* ``export_onnx`` of a copy without ``model.onnx`` against the transformers backend.

Usage: ``python -m benchmarks.experiments.parity_caformer_s36 [--out benchmarks/results/parity_caformer_s36.json]``
(needs the ``test`` extra; about two minutes on two CPU cores).
"""
import argparse
import json
import os
import platform
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORK = tempfile.mkdtemp(prefix='facequal-parity-')
os.environ.update(HF_HOME=os.path.join(WORK, 'home'), HF_HUB_CACHE=os.path.join(WORK, 'hub'), HF_HUB_OFFLINE='1',
                  IMGUTILS_FACEQUAL_HOME=os.path.join(WORK, 'facequal'), ONNX_MODE='cpu',
                  IMGUTILS_FACEQUAL_PLUGINS='')

import numpy as np  # noqa: E402

REPO = 'bench-org/cls-face-quality.caformer_s36'
REPO_NO_ONNX = 'bench-org/cls-face-quality.caformer_s36.no-onnx'


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default=os.path.join(ROOT, 'benchmarks', 'results', 'parity_caformer_s36.json'))
    args = parser.parse_args()

    from tests.support.fake_hub import write_repo
    from tests.support.timm_repos import timm_repo_files
    from tests.test_backends import varied_images

    started = time.perf_counter()
    files = timm_repo_files('caformer_s36', size=384, seed=0)
    build_seconds = time.perf_counter() - started
    write_repo(os.environ['HF_HUB_CACHE'], REPO, files)
    write_repo(os.environ['HF_HUB_CACHE'], REPO_NO_ONNX, {k: v for k, v in files.items() if k != 'model.onnx'})

    import torch
    from imgutils.preprocess import create_torchvision_transforms
    from imgutils_facequal import classify_face_quality_score_batch, export_onnx, load_face_quality_model
    from imgutils_facequal.images import load_rgb_image

    images = varied_images()
    onnx_model = load_face_quality_model(REPO)
    torchvision_transform = create_torchvision_transforms(onnx_model.stages)
    stage_difference = max(
        float(np.abs(onnx_model.preprocess([load_rgb_image(image)])[0]
                     - torchvision_transform(load_rgb_image(image)).numpy()).max())
        for image in images)

    def max_difference(first, second):
        return max(abs(a[name] - b[name]) for a, b in zip(first, second) for name in a)

    onnx_scores = classify_face_quality_score_batch(images, model_name=REPO, batch_size=4)
    torch_scores = classify_face_quality_score_batch(images, model_name=REPO, backend='transformers', batch_size=4)
    started = time.perf_counter()
    export_dir = export_onnx(REPO_NO_ONNX)
    export_seconds = time.perf_counter() - started
    exported_scores = classify_face_quality_score_batch(images, model_name=REPO_NO_ONNX, batch_size=4)
    top_agreement = np.mean([max(a, key=a.get) == max(b, key=b.get) for a, b in zip(onnx_scores, torch_scores)])

    report = {
        'model': 'timm caformer_s36, 4 classes, 384 x 384, random weights',
        'params': int(sum(p.numel() for p in load_face_quality_model(REPO, backend='transformers').model.parameters())),
        'images': len(images),
        'pillow_vs_torchvision_max_abs': stage_difference,
        'onnx_vs_transformers_max_abs': max_difference(onnx_scores, torch_scores),
        'export_vs_transformers_max_abs': max_difference(exported_scores, torch_scores),
        'onnx_vs_transformers_top_class_agreement': float(top_agreement),
        'repo_build_seconds': round(build_seconds, 1),
        'export_seconds_with_check': round(export_seconds, 1),
        'export_dir_files': sorted(os.listdir(export_dir)),
        'torch': torch.__version__,
        'machine': f'{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}',
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(report, f, indent=2)
    print(json.dumps(report, indent=2))


if __name__ == '__main__':
    main()
