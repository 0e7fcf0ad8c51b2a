"""How far int8 variants of a face-quality classifier move its scores, whole and stage by stage.

The performance page ships one reduced-precision opt-in, ``precision='bf16'`` (the
transformers backend with its repeated blocks in bfloat16), which passed the bar (at
least 1.3 x faster than fp32, the same top class on at least 99% of the images, every
class probability within 0.02) on the random-weight benchmark model, and the openvino
backend's ``precision='bf16'`` (the products of stages 0 and 1 in bfloat16) passed it
too; no int8 variant did, nor OpenVINO running the whole graph in bf16. ``--bf16``
measures the transformers opt-in too, ``--openvino-bf16`` the openvino one. It is the
re-check the page asks for, on any model and any face crops:

    # on the published weights and your own face crops (needs the network once)
    imgutils-facequal crop frames/ --out crops/              # the head crops the classifier sees
    imgutils-facequal export caformer_s36.head_crop          # optional: the faster fp32 graph
    python -m benchmarks.experiments.quantization_check --model caformer_s36.head_crop --images crops/ --bf16

    # offline, on the benchmark's random caformer_s36 and 48 cartoon face crops
    python -m benchmarks.experiments.quantization_check

``--images`` holds images scored as they are, so give it crops made the model's way, as
``imgutils-facequal crop`` writes them. Every third image calibrates the static
variant and is left out of the comparison. The fp32 graph is the ONNX file the package
loads for the model (its export, when there is one). Writes ``quantization.json`` and
``quantization.md`` to ``--output-dir`` (default ``benchmarks/results``).
"""
import argparse
import os
import tempfile
import warnings

RESULTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'results')


def bf16_models(model_name: str, backend: str) -> dict:
    """fp32 and bf16 models of one backend (``transformers`` or ``openvino``): its bf16 opt-in."""
    from imgutils_facequal import load_face_quality_model
    return {precision: load_face_quality_model(model_name, backend=backend, device='cpu', precision=precision)
            for precision in ('fp32', 'bf16')}


def bf16_opt_in(model_name: str, batches, reference, rounds: int, backend: str = 'transformers') -> dict:
    """bf16 of a backend against the fp32 ONNX reference; its speed against the same backend in
    fp32 in this process (after the ONNX variants, so that their threads never run together)."""
    import numpy as np
    from benchmarks._quantize import agreement, alternating_seconds_per_face
    models = bf16_models(model_name, backend)
    outputs = np.concatenate([models['bf16'].predict(batch) for batch in batches])
    batch = batches[0][:2]
    seconds = alternating_seconds_per_face({precision: (lambda model=model: model.predict(batch))
                                            for precision, model in models.items()}, len(batch), rounds)
    return {'seconds_per_face': seconds['bf16'], 'backend_fp32_seconds_per_face': seconds['fp32'],
            **agreement(outputs, reference)}


def check(model_name: str, images, calibration_images, work_dir: str, by_stage: bool, rounds: int,
          bf16: bool = False, openvino_bf16: bool = False) -> dict:
    import numpy as np
    from benchmarks._quantize import agreement, batches_of, confidence, probabilities, quantized_variants, seconds_per_face, \
        ships, stage_variants
    from imgutils_facequal import load_face_quality_model
    model = load_face_quality_model(model_name, backend='onnx', device='cpu')
    fp32 = model.onnx_path
    batches = batches_of(model, images)
    reference = probabilities(fp32, batches)

    rng = np.random.default_rng(0)
    step = 1 / 255 / 0.229  # one grey level after the usual normalisation (std 0.229 for red, the smallest)
    noisy = [batch + rng.uniform(-step, step, batch.shape).astype(np.float32) for batch in batches]
    report = {'model': model_name, 'fp32_graph': fp32, 'images': len(images),
              'calibration_images': len(calibration_images), 'fp32_confidence': confidence(reference),
              'fp32_under_one_grey_level_of_noise': agreement(probabilities(fp32, noisy), reference)}

    variants = quantized_variants(fp32, os.path.join(work_dir, 'variants'),
                                  [model.preprocess([image]) for image in calibration_images])
    seconds = seconds_per_face({'fp32': fp32, **variants}, batches[0][:2], rounds)
    report['fp32_seconds_per_face'] = seconds['fp32']
    report['variants'] = {}
    for name, path in variants.items():
        row = {'seconds_per_face': seconds[name], 'speedup': seconds['fp32'] / seconds[name],
               **agreement(probabilities(path, batches), reference)}
        row['ships'] = ships(row)
        report['variants'][name] = row
        print(name, row, flush=True)
    for key, backend, wanted in (('bf16_opt_in', 'transformers', bf16), ('openvino_opt_in', 'openvino', openvino_bf16)):
        if wanted:
            row = report[key] = bf16_opt_in(model_name, batches, reference, rounds, backend)
            row['speedup'] = seconds['fp32'] / row['seconds_per_face']
            row['ships'] = ships(row)
            print(f'bf16, {backend}', row, flush=True)
    if by_stage:
        report['by_stage'] = {name: agreement(probabilities(path, batches), reference)
                              for name, path in stage_variants(fp32, os.path.join(work_dir, 'stages')).items()}
        for name, row in report['by_stage'].items():
            print(name, row, flush=True)
    return report


def _gap(row: dict) -> str:
    return '-' if row['moved_top_two_gap_max'] is None else f"{row['moved_top_two_gap_max']:.2f}"


def markdown(report: dict) -> str:
    gaps = report['fp32_confidence']['top_two_log_probability_gap_percentiles']
    noise = report['fp32_under_one_grey_level_of_noise']
    lines = [f"Model `{report['model']}`, {report['images']} images compared, {report['calibration_images']} "
             f"more for calibration; fp32 {report['fp32_seconds_per_face']:.3f} s per face at batch 2.", '',
             f"fp32 confidence: {100 * report['fp32_confidence']['share_top_probability_over_0_999']:.0f}% of the "
             f"images have a top probability over 0.999; the gap between the top two log-probabilities is "
             f"{gaps['10']:.1f} / {gaps['50']:.1f} / {gaps['90']:.1f} (10th / 50th / 90th percentile); the last column "
             "below is the widest such gap among the images a variant moves by more than 0.02. Uniform noise "
             f"of one grey level moves a probability by at most {noise['max_probability_difference']:.4f}.", '',
             '| variant | s per face | speed-up vs fp32 | top-class agreement | max prob. difference '
             '| images within 0.02 | widest fp32 top-two gap among the others | ships |',
             '|---|---|---|---|---|---|---|---|']
    for name, row in report['variants'].items():
        lines.append(f"| {name} | {row['seconds_per_face']:.3f} | {row['speedup']:.2f}x | "
                     f"{100 * row['top_class_agreement']:.1f}% | {row['max_probability_difference']:.4f} | "
                     f"{100 * row['share_within_0_02']:.1f}% | {_gap(row)} | {'yes' if row['ships'] else 'no'} |")
    opt_ins = (('bf16_opt_in', "`precision='bf16'` (torch, the repeated blocks in bfloat16)", 'torch'),
               ('openvino_bf16', 'OpenVINO with the whole graph in bfloat16 (not offered)', 'OpenVINO'),
               ('openvino_opt_in', "`backend='openvino', precision='bf16'` (OpenVINO, the products of stages 0 "
                                   "and 1 in bfloat16)", 'OpenVINO'))
    for key, label, runtime in opt_ins:
        if key not in report:
            continue
        row = report[key]
        lines += ['', f"{label}: {row['seconds_per_face']:.3f} s "
                      f"per face at batch 2, {row['speedup']:.2f}x the fp32 graph above (measured minutes apart) and "
                      f"{row['backend_fp32_seconds_per_face'] / row['seconds_per_face']:.2f}x {runtime} fp32 "
                      "(call by call); "
                      f"top-class agreement {100 * row['top_class_agreement']:.1f}%, max prob. difference "
                      f"{row['max_probability_difference']:.4f}, {100 * row['share_within_0_02']:.1f}% of the images "
                      f"within 0.02; widest fp32 top-two gap among the others {_gap(row)}."]
    if 'by_stage' in report:
        lines += ['', 'One stage at a time in int8 (dynamic, per channel, 7-bit weights), the rest fp32:', '',
                  '| quantised | top-class agreement | max prob. difference | images within 0.02 '
                  '| widest fp32 top-two gap among the others |', '|---|---|---|---|---|']
        for name, row in report['by_stage'].items():
            lines.append(f"| {name} | {100 * row['top_class_agreement']:.1f}% | "
                         f"{row['max_probability_difference']:.4f} | {100 * row['share_within_0_02']:.1f}% "
                         f"| {_gap(row)} |")
    return '\n'.join(lines) + '\n'


def main():
    from benchmarks._quantize import add_model_arguments
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser, 'folder of face crops (default: 48 cartoon crops, 16 more to calibrate)')
    parser.add_argument('--by-stage', action='store_true', help='also quantise one stage at a time')
    parser.add_argument('--bf16', action='store_true', help="also measure precision='bf16' of the transformers "
                                                            "backend (needs the torch extra)")
    parser.add_argument('--openvino-bf16', action='store_true', help="also measure the openvino backend's bf16 "
                                                                     "opt-in (needs the openvino extra)")
    parser.add_argument('--rounds', type=int, default=7)
    parser.add_argument('--output-dir', default=RESULTS)
    args = parser.parse_args()
    warnings.filterwarnings('ignore')
    from benchmarks._quantize import load_crops, offline_model
    model_name = args.model
    if model_name is None:
        model_name = offline_model()
        from benchmarks import _fixtures
        work_dir = _fixtures.WORK
    else:
        work_dir = tempfile.mkdtemp(prefix='facequal-quantization-')
    if args.images:
        crops = load_crops(args.images)
        images = [image for i, image in enumerate(crops) if i % 3 != 2]
        calibration = [image for i, image in enumerate(crops) if i % 3 == 2]
    else:
        from benchmarks._faces import cartoon_faces
        images, calibration = cartoon_faces(48, seed=1), cartoon_faces(16, seed=2)  # as in performance.py
    report = check(model_name, images, calibration, work_dir, args.by_stage, args.rounds, args.bf16,
                   args.openvino_bf16)
    from benchmarks._results import write_results
    write_results(args.output_dir, 'quantization', report, markdown(report))


if __name__ == '__main__':
    main()
