"""The performance table on a GPU: the model card's way against batched scoring, on CUDA.

The same architecture, weights, frames and detectors as ``performance.py`` (timm
caformer_s36, 4 classes, 384 x 384, random weights, in the published layout, served
offline), with the classifier on CUDA:

1. the model card's way: transformers processor and model on the GPU, one face crop at a
   time, after imgutils' detector;
2. ``detect_face_quality`` image by image (transformers backend on CUDA: every crop of an
   image in one forward pass);
3. the folder pipeline (``imgutils-facequal score``): decoding, detection, cropping and
   preprocessing in worker threads, crops of several images in forward passes of 32,
   with the detectors in one thread of their own (the default) and in every worker, and
   with the ``precision='bf16'`` opt-in;
4. the classifier alone on ready tensors, fp32 at batch 1 and 32, the whole model under
   bf16 autocast and the ``precision='bf16'`` opt-in at 32: the ceiling the end-to-end
   paths are measured against;
5. how far the opt-in moves the probabilities from fp32 on CUDA, on the cartoon face crops
   of the CPU benchmark.

With ``onnxruntime-gpu`` installed, the ONNX backend on CUDA too: ``detect_face_quality``
and the folder pipeline on the published-style ``model.onnx`` (rewritten at load, as the
default path runs it), the classifier alone on that graph and on the graph as published,
and how far the CUDA provider's probabilities are from the CPU provider's on the same
input. Where only the CPU build is installed, the table says so instead. Usage::

    python -m benchmarks.experiments.gpu_performance [--rounds 3] [--images 48] [--output-dir DIR]

Writes ``gpu_performance.json`` and ``gpu_performance.md`` (default ``benchmarks/results``).
"""
import argparse
import os
import platform
import statistics
import time
import warnings

from benchmarks import _fixtures  # noqa: F401  (sets the offline environment first)
from benchmarks._fixtures import CAFORMER_NO_ONNX_REPO, CAFORMER_REPO, ROOT, WORK, build_hub, graph_as_published, write_frames
from benchmarks._results import write_results

RESULTS = os.path.join(ROOT, 'benchmarks', 'results')
MODEL = CAFORMER_NO_ONNX_REPO  # safetensors and remote code only: the card's way and the transformers backend
ONNX_MODEL = CAFORMER_REPO  # the same weights with a published-style model.onnx


def card_way(device):
    """The card's code with ``.to(device)``: one crop at a time, each result read back."""
    import torch
    from imgutils.data import load_image
    from transformers import AutoImageProcessor, AutoModel
    from imgutils_facequal import FaceLocator
    locate_faces = FaceLocator().locate
    processor = AutoImageProcessor.from_pretrained(MODEL, trust_remote_code=True)
    model = AutoModel.from_pretrained(MODEL, trust_remote_code=True, use_infer_head=True).eval().to(device)

    def run(paths):
        faces = 0
        for path in paths:
            image = load_image(path, mode='RGB', force_background='white')
            for location in locate_faces(image):
                input_ = processor(image.crop(location.crop_bbox), return_tensors='pt')['pixel_values']
                with torch.no_grad():
                    output = model(input_.to(device)).cpu()
                faces += int(output.shape[0])
        return faces
    return run


def runners(device, with_onnx: bool):
    from imgutils_facequal import detect_face_quality
    from imgutils_facequal.pipeline import find_images, score_images
    options = {'model_name': MODEL, 'backend': 'transformers', 'device': device}
    onnx_options = {'model_name': ONNX_MODEL, 'backend': 'onnx', 'device': device}
    onnx_paths = {
        'detect_face_quality, ONNX, per image': lambda paths: sum(
            len(detect_face_quality(p, **onnx_options)) for p in paths),
        'folder pipeline, ONNX': lambda paths: sum(
            len(r.faces) for r in score_images(find_images(paths), **onnx_options)),
    } if with_onnx else {}
    return {
        "card's way": card_way(device),
        'detect_face_quality, per image': lambda paths: sum(len(detect_face_quality(p, **options)) for p in paths),
        'folder pipeline': lambda paths: sum(len(r.faces) for r in score_images(find_images(paths), **options)),
        "folder pipeline, precision='bf16'": lambda paths: sum(
            len(r.faces) for r in score_images(find_images(paths), precision='bf16', **options)),
        **onnx_paths,
    }


def synchronizer(device):
    import torch
    return torch.cuda.synchronize if device.startswith('cuda') else (lambda: None)


def end_to_end(groups, device, rounds, with_onnx):
    """Faces per second of each path on each group of frames, the paths alternating round by round."""
    synchronize = synchronizer(device)
    paths = runners(device, with_onnx)
    table = {}
    for faces_per_image, frames in groups.items():
        seconds = {name: [] for name in paths}
        expected = len(frames) * faces_per_image
        for run in paths.values():
            run(frames[:4])  # warm-up: models loaded, kernels chosen
        for _ in range(rounds):
            for name, run in paths.items():
                synchronize()
                started = time.perf_counter()
                found = run(frames)
                synchronize()
                seconds[name].append(time.perf_counter() - started)
                assert found == expected, (name, found, expected)
        row = {name: expected / statistics.median(values) for name, values in seconds.items()}
        table[f'{faces_per_image}_face'] = {'faces': expected, 'faces_per_s': row,
                                            'vs_card': {name: rate / row["card's way"] for name, rate in row.items()}}
        print(faces_per_image, table[f'{faces_per_image}_face'], flush=True)
    return table


def faces_per_second(call, batch_size, rounds, synchronize=lambda: None):
    """Faces per second of ``call`` (a forward pass of ``batch_size``), median of at least 5 after 3 warm-ups."""
    for _ in range(3):
        call()
    synchronize()
    times = []
    for _ in range(max(rounds, 5)):
        started = time.perf_counter()
        call()
        synchronize()
        times.append(time.perf_counter() - started)
    return batch_size / statistics.median(times)


def classifier_alone(device, rounds):
    """Faces per second of the forward pass alone on ready input, CUDA-synchronised."""
    import torch
    from imgutils_facequal import load_face_quality_model
    model = load_face_quality_model(MODEL, backend='transformers', device=device).model
    opt_in = load_face_quality_model(MODEL, backend='transformers', device=device, precision='bf16').model
    synchronize = synchronizer(device)
    rows = {}
    for label, batch_size, bf16, network in (('fp32, batch 1', 1, False, model), ('fp32, batch 32', 32, False, model),
                                             ('bf16 autocast, batch 32', 32, True, model),
                                             ("precision='bf16', batch 32", 32, False, opt_in)):
        x = torch.rand(batch_size, 3, 384, 384, device=device)

        def call():
            with torch.inference_mode(), torch.autocast(device.split(':')[0], dtype=torch.bfloat16, enabled=bf16):
                network(x)
        rows[label] = faces_per_second(call, batch_size, rounds, synchronize)
    print('classifier alone', rows, flush=True)
    return rows


def onnx_on_cuda(device, rounds) -> dict:
    """The ONNX backend's classifier on CUDA: faces per second on input in host memory (as
    ``predict`` gets it), rewritten at load and as published, and its agreement with the
    CPU provider on the same input (the rewrite is checked on the CPU provider only)."""
    import numpy as np
    from benchmarks._faces import cartoon_faces
    from benchmarks._quantize import agreement
    from imgutils_facequal import load_face_quality_model
    rewritten = load_face_quality_model(ONNX_MODEL, backend='onnx', device=device)
    assert rewritten.runs_on_gpu and rewritten.graph_rewrites, rewritten.session.get_providers()
    as_published = graph_as_published(ONNX_MODEL, 'gpu')
    rows = {}
    for label, batch_size, model in (('rewritten at load, batch 1', 1, rewritten),
                                     ('rewritten at load, batch 32', 32, rewritten),
                                     ('as published, batch 32', 32, as_published)):
        x = np.random.rand(batch_size, 3, 384, 384).astype(np.float32)
        rows[label] = faces_per_second(lambda model=model, x=x: model.predict(x), batch_size, rounds)
    crops = cartoon_faces(48, seed=1) + cartoon_faces(192, seed=7)
    on_cpu = load_face_quality_model(ONNX_MODEL, backend='onnx', device='cpu')
    outputs = {name: np.concatenate([model.predict(rewritten.preprocess(crops[start:start + 32]))
                                     for start in range(0, len(crops), 32)])
               for name, model in (('cuda', rewritten), ('cpu', on_cpu))}
    report = {'classifier_faces_per_s': rows, 'graph_rewrites': rewritten.graph_rewrites,
              'agreement_with_cpu': {'crops': len(crops), **agreement(outputs['cuda'], outputs['cpu'])}}
    print('onnx on cuda', report, flush=True)
    return report


def bf16_agreement(device) -> dict:
    """The opt-in against fp32, both on ``device``, on the CPU benchmark's 240 cartoon crops."""
    import numpy as np
    from benchmarks._faces import cartoon_faces
    from benchmarks._quantize import agreement
    from imgutils_facequal import load_face_quality_model
    crops = cartoon_faces(48, seed=1) + cartoon_faces(192, seed=7)
    outputs = {}
    for precision in ('fp32', 'bf16'):
        model = load_face_quality_model(MODEL, backend='transformers', device=device, precision=precision)
        outputs[precision] = np.concatenate([model.predict(model.preprocess(crops[start:start + 32]))
                                             for start in range(0, len(crops), 32)])
    row = {'crops': len(crops), **agreement(outputs['bf16'], outputs['fp32'])}
    print('bf16 agreement', row, flush=True)
    return row


def markdown(report) -> str:
    machine = report['machine']
    lines = [f"GPU: {machine['gpu']}, {machine['cpus']} CPU cores; torch {machine['torch']}, "
             f"Python {machine['python']}; onnxruntime providers: {', '.join(machine['onnxruntime_providers'])}.", '']
    names = list(next(iter(report['paths'].values()))['faces_per_s'])
    lines += ['| images | faces | ' + ' | '.join(f'{name} (faces/s)' for name in names) + ' | '
              + ' | '.join(f'{name} ÷ card' for name in names[1:]) + ' |',
              '|---|---|' + '---|' * (2 * len(names) - 1)]
    for key, row in report['paths'].items():
        lines.append(f"| {key.replace('_', ' ')} | {row['faces']} | "
                     + ' | '.join(f"{row['faces_per_s'][name]:.1f}" for name in names) + ' | '
                     + ' | '.join(f"{row['vs_card'][name]:.1f}x" for name in names[1:]) + ' |')
    lines += ['', 'The classifier alone on ready tensors: '
              + '; '.join(f'{label}: {rate:.0f} faces/s' for label, rate in report['classifier_alone'].items()) + '.',
              '']
    if 'bf16_agreement' in report:
        row = report['bf16_agreement']
        lines += [f"`precision='bf16'` against fp32, both on this GPU, on {row['crops']} cartoon face crops: top-class "
                  f"agreement {100 * row['top_class_agreement']:.1f}%, largest probability move "
                  f"{row['max_probability_difference']:.4f}, {100 * row['share_within_0_02']:.1f}% of the crops "
                  "within 0.02.", '']
    onnx_cuda = report['onnx_cuda']
    if isinstance(onnx_cuda, str):
        lines += [onnx_cuda]
    else:
        row = onnx_cuda['agreement_with_cpu']
        lines += ['The ONNX backend\'s classifier alone on CUDA (onnxruntime-gpu '
                  f"{onnx_cuda['onnxruntime']}), input in host memory: "
                  + '; '.join(f'{label}: {rate:.0f} faces/s' for label, rate in
                              onnx_cuda['classifier_faces_per_s'].items())
                  + f". The rewrite at load ({', '.join(onnx_cuda['graph_rewrites'])}) against the CPU provider on "
                  f"the same {row['crops']} cartoon crops: top-class agreement "
                  f"{100 * row['top_class_agreement']:.1f}%, largest probability difference "
                  f"{row['max_probability_difference']:.4f}."]
    return '\n'.join(lines) + '\n'


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--images', type=int, default=48, help='frames per group (1 and 4 faces each)')
    parser.add_argument('--device', default='cuda')
    parser.add_argument('--output-dir', default=RESULTS)
    args = parser.parse_args()
    warnings.filterwarnings('ignore')
    import onnxruntime
    import torch
    torch.backends.cudnn.benchmark = True
    with_onnx = 'CUDAExecutionProvider' in onnxruntime.get_available_providers()
    if with_onnx and hasattr(onnxruntime, 'preload_dlls'):
        onnxruntime.preload_dlls()  # CUDA and cuDNN from the nvidia-* wheels torch brought
    onnx_note = ('The ONNX backend on CUDA was not measured: this machine has the CPU build of onnxruntime '
                 f'{onnxruntime.__version__} (providers above).')
    try:
        build_hub(published_onnx=with_onnx)
    except Exception as error:  # the published-style export needs onnxsim; the transformers rows do not
        if not with_onnx:
            raise
        with_onnx = False
        onnx_note = f'The ONNX backend on CUDA was not measured: building its model.onnx failed ({error!r}).'
        build_hub(published_onnx=False)
    if with_onnx:  # the graph is rewritten and checked here, at its first load, before anything is timed
        from imgutils_facequal import load_face_quality_model
        model = load_face_quality_model(ONNX_MODEL, backend='onnx', device=args.device)
        if not model.runs_on_gpu:
            with_onnx = False
            onnx_note = (f'The ONNX backend on CUDA was not measured: onnxruntime-gpu {onnxruntime.__version__} is '
                         f'installed, but its session ran on {model.session.get_providers()}.')
    groups = {1: write_frames(os.path.join(WORK, 'gpu-1face'), args.images, 1),
              4: write_frames(os.path.join(WORK, 'gpu-4face'), args.images, 4)}
    providers = onnxruntime.get_available_providers()
    report = {'machine': {'gpu': torch.cuda.get_device_name() if torch.cuda.is_available() else 'none',
                          'cpus': os.cpu_count(), 'torch': torch.__version__, 'python': platform.python_version(),
                          'onnxruntime_providers': providers},
              'paths': end_to_end(groups, args.device, args.rounds, with_onnx),
              'classifier_alone': classifier_alone(args.device, args.rounds),
              'bf16_agreement': bf16_agreement(args.device)}
    report['onnx_cuda'] = ({**onnx_on_cuda(args.device, args.rounds), 'onnxruntime': onnxruntime.__version__}
                           if with_onnx else onnx_note)
    write_results(args.output_dir, 'gpu_performance', report, markdown(report))


if __name__ == '__main__':
    main()
