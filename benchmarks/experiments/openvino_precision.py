"""Can OpenVINO run only caformer_s36's matrix products in bf16 and keep to the opt-in bar?

With the whole graph in bfloat16 (``INFERENCE_PRECISION_HINT``) OpenVINO is about 3 x
faster than fp32 but moves probabilities by up to 0.085 (the performance page), so the
openvino backend's ``precision='bf16'`` runs only the products of stages 0 and 1 in bf16,
the variant this script found to keep to the bar. Torch's opt-in keeps to the bar by running only the
repeated blocks under autocast, where layer norms, softmax and the residual sums stay in
fp32. This measures the ways OpenVINO offers to do the same, on the same crops, against
the fp32 ONNX graph in onnxruntime:

* ``bf16``: the whole graph in bf16, which the backend does not run;
* ``bf16, precise set from Python``: every node marked ``precise`` (the runtime attribute
  that keeps a node in its original precision) through ``get_rt_info()``;
* ``bf16, precise in the IR``: every node but the ``MatMul`` and ``Convolution`` products
  marked ``precise`` in an OpenVINO IR file, which is where the CPU plugin reads it from;
* ``explicit bf16 products`` (and ``..., blocks only``): the graph kept fp32, with
  ``Convert`` nodes to bf16 before each product and back to fp32 after it, the way torch's
  autocast casts (the blocks-only variant leaves the stem, the downsampling layers and the
  head in fp32, like the torch opt-in; the last keeps the attention stages 2 and 3 in fp32
  too, and is what the openvino backend's opt-in runs, on its own rewrite of the graph).

and, on one product alone (1024 x 384 by 384 x 1536, random), how far OpenVINO's bf16
``MatMul`` lands from the exact product of the same bf16-rounded inputs, against torch's.

Usage::

    python -m benchmarks.experiments.openvino_precision [--model NAME --images CROPS/] [--rounds 5]

Without ``--model`` it runs offline on the benchmark's random caformer_s36 (its export, or
with ``--published`` its published-style ``model.onnx``) and 48 + 192 cartoon face crops.
Writes ``benchmarks/results/openvino_precision.json`` and ``.md`` (``..._published`` with
``--published``).
"""
import argparse
import os
import re
import shutil
import tempfile
import time
import warnings

from imgutils_facequal.backends.openvino import _products_in_bf16_named

RESULTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'results')
PAUSE_BEFORE_CALL = 0.3  # as in performance.py: the previous call's spinning threads settle
PRODUCTS = ('MatMul', 'Convolution')
PRECISE = '<rt_info><attribute name="precise" version="0" /></rt_info>'


def read_static(core, onnx_path: str):
    """The ONNX graph in OpenVINO, one crop per request (as the openvino backend compiles it)."""
    model = core.read_model(onnx_path)
    model.reshape({model.inputs[0].get_any_name(): [1, *model.inputs[0].get_partial_shape()[1:].to_shape()]})
    return model


def marked_from_python(core, onnx_path: str):
    model = read_static(core, onnx_path)
    for node in model.get_ops():
        node.get_rt_info()['precise'] = ''
    return model


def marked_in_ir(core, onnx_path: str, work_dir: str):
    """Every layer but the products marked ``precise`` in the IR's XML, read back."""
    import openvino
    plain = os.path.join(work_dir, 'plain.xml')
    openvino.save_model(read_static(core, onnx_path), plain, compress_to_fp16=False)
    with open(plain) as f:
        xml = f.read()

    def mark(layer):
        kind = re.search(r'type="([^"]+)"', layer.group(0)).group(1)
        keep = kind in PRODUCTS or kind in ('Const', 'Parameter', 'Result')
        return layer.group(0) if keep else layer.group(0) + PRECISE
    marked = os.path.join(work_dir, 'marked.xml')
    with open(marked, 'w') as f:
        f.write(re.sub(r'<layer [^>]*>', mark, xml))
    shutil.copy(os.path.join(work_dir, 'plain.bin'), os.path.join(work_dir, 'marked.bin'))
    return core.read_model(marked)


def explicit_bf16_products(core, onnx_path: str, where: str = ''):
    """The fp32 graph with its products (those whose node names match ``where``) fed bf16 and
    their results converted back to fp32, as the openvino backend's opt-in does for its own."""
    model = read_static(core, onnx_path)
    if not _products_in_bf16_named(model, where):  # the backend's conversion, on the set this study varies
        raise SystemExit(f'{onnx_path}: no MatMul or Convolution named like {where!r}')
    return model


def side_by_side(core, model, precision: str):
    """A forward pass over a batch: one crop per request, the requests side by side."""
    import numpy as np
    import openvino
    compiled = core.compile_model(model, 'CPU', {'INFERENCE_PRECISION_HINT': precision,
                                                 'PERFORMANCE_HINT': 'THROUGHPUT'})
    queue = openvino.AsyncInferQueue(compiled, int(compiled.get_property('OPTIMAL_NUMBER_OF_INFER_REQUESTS')))
    outputs = {}
    queue.set_callback(lambda request, index: outputs.__setitem__(index, request.get_output_tensor(0).data.copy()))

    def predict(batch):
        outputs.clear()
        for index in range(len(batch)):
            queue.start_async({0: batch[index:index + 1]}, index)
        queue.wait_all()
        rows = np.concatenate([outputs[index] for index in range(len(batch))])
        return rows / rows.sum(axis=1, keepdims=True)
    return predict


def one_product_error(core) -> dict:
    """Mean |error| of a bf16 product against the float64 product of the same bf16-rounded
    inputs, and against that product rounded to bf16 (the closest a bf16 result can be)."""
    import numpy as np
    import openvino
    import openvino.opset13 as ops

    def to_bf16(a):  # round to nearest even, kept in float64
        bits = a.astype(np.float32).view(np.uint32).astype(np.uint64)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        return bits.astype(np.uint32).view(np.float32).astype(np.float64)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 1024, 384)).astype(np.float32)
    w = (rng.standard_normal((384, 1536)) / 20).astype(np.float32)
    exact = to_bf16(x) @ to_bf16(w)
    rounded = to_bf16(exact)
    parameter = ops.parameter(list(x.shape), np.float32)
    product = ops.matmul(ops.convert(parameter, 'bf16'), ops.convert(ops.constant(w), 'bf16'), False, False)
    compiled = core.compile_model(openvino.Model([ops.convert(product, 'f32')], [parameter]), 'CPU',
                                  {'INFERENCE_PRECISION_HINT': 'f32'})
    results = {'openvino': compiled({0: x})[0].astype(np.float64)}
    try:
        import torch
        results['torch'] = (torch.from_numpy(x).bfloat16() @ torch.from_numpy(w).bfloat16()).double().numpy()
    except ImportError:
        pass
    return {name: {'mean_error_vs_exact_product': float(np.abs(value - exact).mean()),
                   'mean_error_vs_product_rounded_to_bf16': float(np.abs(value - rounded).mean())}
            for name, value in results.items()}


def check(model_name: str, image_sets: dict, rounds: int, work_dir: str) -> dict:
    import numpy as np
    import openvino
    from benchmarks._quantize import agreement, alternating_seconds_per_face, batches_of, probabilities, ships
    from imgutils_facequal import load_face_quality_model
    model = load_face_quality_model(model_name, backend='onnx', device='cpu')
    onnx_path = model.onnx_path
    batches = {name: batches_of(model, images) for name, images in image_sets.items()}
    references = {name: probabilities(onnx_path, sets) for name, sets in batches.items()}
    core = openvino.Core()
    variants = {
        'fp32': (read_static(core, onnx_path), 'f32'),
        'bf16': (read_static(core, onnx_path), 'bf16'),
        'bf16, precise set from Python': (marked_from_python(core, onnx_path), 'bf16'),
        'bf16, precise in the IR but for the products': (marked_in_ir(core, onnx_path, work_dir), 'bf16'),
        'explicit bf16 products': (explicit_bf16_products(core, onnx_path), 'f32'),
        'explicit bf16 products, blocks only': (explicit_bf16_products(core, onnx_path, r'/blocks\.'), 'f32'),
        'explicit bf16 products, blocks of stages 0 and 1': (
            explicit_bf16_products(core, onnx_path, r'/stages\.[01]/blocks/'), 'f32'),
    }
    predictors = {name: side_by_side(core, graph, precision) for name, (graph, precision) in variants.items()}
    report = {'model': model_name, 'fp32_graph': onnx_path, 'openvino': openvino.__version__,
              'images': {name: len(images) for name, images in image_sets.items()}, 'variants': {}}
    outputs = {}
    for name, predict in predictors.items():
        outputs[name] = {set_name: np.concatenate([predict(batch) for batch in sets])
                         for set_name, sets in batches.items()}
        report['variants'][name] = {'agreement': {set_name: agreement(values, references[set_name])
                                                  for set_name, values in outputs[name].items()}}
        print(name, report['variants'][name]['agreement'], flush=True)
    report['python_marks_change_nothing'] = all(
        np.array_equal(outputs['bf16, precise set from Python'][set_name], outputs['bf16'][set_name])
        for set_name in batches)

    batch = next(iter(batches.values()))[0][:2]

    def timed(predict):
        def call():
            time.sleep(PAUSE_BEFORE_CALL)
            predict(batch)
        return call
    seconds = alternating_seconds_per_face({name: timed(predict) for name, predict in predictors.items()},
                                           len(batch), rounds)
    # the rest before each call is not the model's time
    seconds = {name: value - PAUSE_BEFORE_CALL / len(batch) for name, value in seconds.items()}
    for name, row in report['variants'].items():
        row['seconds_per_face'] = seconds[name]
        row['speedup_vs_fp32'] = seconds['fp32'] / seconds[name]
        worst = {key: (min if key != 'max_probability_difference' else max)(
            row['agreement'][set_name][key] for set_name in batches)
            for key in ('top_class_agreement', 'max_probability_difference', 'share_within_0_02')}
        row['keeps_to_bar'] = ships({**worst, 'speedup': row['speedup_vs_fp32']}) if name != 'fp32' else None
    report['one_product'] = one_product_error(core)
    return report


def markdown(report: dict) -> str:
    sets = list(report['images'])
    lines = [f"OpenVINO {report['openvino']}, model `{report['model']}`, on "
             + ' and '.join(report['images']) + '. Speed at batch 2, one crop per request, alternating call by call.',
             '',
             '| variant | s per face | × OpenVINO fp32 | '
             + ' | '.join(f'max prob. difference, within 0.02, top class ({name})' for name in sets)
             + ' | keeps to the bar (agreement, and 1.3 × OpenVINO fp32) |',
             '|---|---|---|' + '---|' * len(sets) + '---|']
    for name, row in report['variants'].items():
        cells = [f"{a['max_probability_difference']:.4f}, {100 * a['share_within_0_02']:.1f}%, "
                 f"{100 * a['top_class_agreement']:.1f}%" for a in (row['agreement'][s] for s in sets)]
        bar = '-' if row['keeps_to_bar'] is None else ('yes' if row['keeps_to_bar'] else 'no')
        lines.append(f"| {name} | {row['seconds_per_face']:.3f} | {row['speedup_vs_fp32']:.2f} | "
                     + ' | '.join(cells) + f' | {bar} |')
    lines += ['', 'Marks set from Python change nothing (outputs identical to plain bf16): '
              + ('yes' if report['python_marks_change_nothing'] else 'no') + '.', '',
              'One bf16 product (1024 × 384 by 384 × 1536), mean |error| against the float64 product of the '
              'same bf16-rounded inputs:', '', '| runtime | against the exact product | against it rounded to bf16 |',
              '|---|---|---|']
    for name, row in report['one_product'].items():
        lines.append(f"| {name} | {row['mean_error_vs_exact_product']:.2e} | "
                     f"{row['mean_error_vs_product_rounded_to_bf16']:.2e} |")
    return '\n'.join(lines) + '\n'


def main():
    from benchmarks._quantize import add_model_arguments
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser, 'folder of face crops (default: 48 + 192 cartoon crops)')
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--published', action='store_true', help="without --model: the benchmark's published-style "
                                                                "model.onnx instead of its export")
    parser.add_argument('--output-dir', default=RESULTS)
    args = parser.parse_args()
    warnings.filterwarnings('ignore')
    from benchmarks._quantize import load_crops, offline_model
    model_name = args.model or offline_model(args.published)
    if args.images:
        crops = load_crops(args.images)
        image_sets = {f'your {len(crops)} crops': crops}
    else:
        from benchmarks._faces import cartoon_faces
        image_sets = {'48 cartoon crops': cartoon_faces(48, seed=1), '192 cartoon crops': cartoon_faces(192, seed=7)}
    with tempfile.TemporaryDirectory(prefix='facequal-openvino-precision-') as work_dir:
        report = check(model_name, image_sets, args.rounds, work_dir)
    from benchmarks._results import write_results
    name = 'openvino_precision_published' if args.published and args.model is None else 'openvino_precision'
    write_results(args.output_dir, name, report, markdown(report))


if __name__ == '__main__':
    main()
