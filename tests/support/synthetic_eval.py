"""A small labelled set built like the card's: the label is the head's size in frame pixels.

Frames are 256 x 256 grey; each holds one head square whose side decides the label
(poor 12-21 px, ok 28-43, good 56-87, excellent 112-175), so a wide shot is poor and a
close-up excellent, as with ``face_geo_mean``. The head is drawn in its class colour: the
"face content" that survives any crop.

Two classifiers in the published layout read these images:

* ``framing``: reads the fraction of the frame the head fills (non-grey pixels) and
  nothing else, the shortcut the card warns about;
* ``content``: the colour classifier (mean colour of the crop), which holds under crops
  because the grey background adds nothing to the mean's direction.
"""
import json
import math
import os
from typing import Dict, List

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.support.fake_hub import CLASS_COLOURS, QUALITY_CLASSES, colour_classifier_onnx

FRAME = 256
GREY = (128, 128, 128)
SIZE_BINS = {'poor': (12, 22), 'ok': (28, 44), 'good': (56, 88), 'excellent': (112, 176)}
INPUT = 64

FRAMING_REPO = 'test-org/framing-shortcut'
CONTENT_REPO = 'test-org/content-reader'


def exact_resize_stages() -> List[dict]:
    return [
        {'type': 'resize', 'size': [INPUT, INPUT], 'interpolation': 'bilinear', 'max_size': None, 'antialias': True},
        {'type': 'maybe_to_tensor'},
        # the grey background normalises to exactly 0, so it adds nothing to a crop's mean colour
        {'type': 'normalize', 'mean': [128 / 255] * 3, 'std': [0.5, 0.5, 0.5]},
    ]


def framing_classifier_onnx(gain: float = 8.0) -> bytes:
    """Scores class k by how close log(fraction of non-grey pixels) is to class k's typical value."""
    centres = np.array([math.log(((lo + hi) / 2 / FRAME) ** 2) for lo, hi in SIZE_BINS.values()], np.float32)
    nodes = [
        helper.make_node('Abs', ['input'], ['magnitude']),
        helper.make_node('ReduceMax', ['magnitude'], ['strongest'], axes=[1], keepdims=1),
        helper.make_node('Greater', ['strongest', 'threshold'], ['is_head']),
        helper.make_node('Cast', ['is_head'], ['head_float'], to=TensorProto.FLOAT),
        helper.make_node('GlobalAveragePool', ['head_float'], ['fraction4d']),
        helper.make_node('Flatten', ['fraction4d'], ['fraction'], axis=1),
        helper.make_node('Max', ['fraction', 'floor'], ['safe_fraction']),
        helper.make_node('Log', ['safe_fraction'], ['log_fraction']),
        helper.make_node('Sub', ['log_fraction', 'centres'], ['distance']),
        helper.make_node('Mul', ['distance', 'distance'], ['squared']),
        helper.make_node('Mul', ['squared', 'negative_gain'], ['logits']),
        helper.make_node('Softmax', ['logits'], ['output'], axis=1),
    ]
    initializers = [
        numpy_helper.from_array(np.array(0.1, np.float32), 'threshold'),
        numpy_helper.from_array(np.array(1e-6, np.float32), 'floor'),
        numpy_helper.from_array(centres[None, :], 'centres'),
        numpy_helper.from_array(np.array(-gain, np.float32), 'negative_gain'),
    ]
    graph = helper.make_graph(
        nodes, 'framing_shortcut',
        [helper.make_tensor_value_info('input', TensorProto.FLOAT, ['batch', 3, 'height', 'width'])],
        [helper.make_tensor_value_info('output', TensorProto.FLOAT, ['batch', len(SIZE_BINS)])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 14)])
    model.ir_version = 8
    entry = model.metadata_props.add()
    entry.key, entry.value = 'classes', json.dumps(QUALITY_CLASSES)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _repo(onnx_bytes: bytes) -> Dict[str, bytes]:
    return {'model.onnx': onnx_bytes,
            'preprocessor_config.json': json.dumps({'stages': exact_resize_stages()}).encode(),
            'meta.json': json.dumps({'classes': QUALITY_CLASSES}).encode()}


def eval_repos() -> Dict[str, Dict[str, bytes]]:
    return {FRAMING_REPO: _repo(framing_classifier_onnx()), CONTENT_REPO: _repo(colour_classifier_onnx())}


def write_synthetic_set(directory: str, per_class: int = 12, seed: int = 5) -> List[dict]:
    """Frames and a labels.csv in ``directory``; returns the rows."""
    from PIL import Image, ImageDraw
    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    rows = []
    for label, (low, high) in SIZE_BINS.items():
        for number in range(per_class):
            side = int(rng.integers(low, high))
            x0, y0 = (int(v) for v in rng.integers(0, FRAME - side, size=2))
            image = Image.new('RGB', (FRAME, FRAME), GREY)
            ImageDraw.Draw(image).rectangle((x0, y0, x0 + side - 1, y0 + side - 1), fill=CLASS_COLOURS[label])
            name = f'{label}_{number:02d}.png'
            image.save(os.path.join(directory, name))
            rows.append({'image': name, 'label': label, 'head_x0': x0, 'head_y0': y0,
                         'head_x1': x0 + side, 'head_y1': y0 + side})
    with open(os.path.join(directory, 'labels.csv'), 'w') as f:
        f.write('image,label,head_x0,head_y0,head_x1,head_y1\n')
        for row in rows:
            f.write(','.join(str(row[key]) for key in ('image', 'label', 'head_x0', 'head_y0', 'head_x1', 'head_y1'))
                    + '\n')
    return rows
