"""Build tiny models in the published layout and serve them from a Hugging Face cache.

The files are laid out as ``HF_HUB_CACHE/models--{org}--{name}/refs/main`` plus
``snapshots/{commit}/{path}``, which is what ``hf_hub_download`` reads when
``HF_HUB_OFFLINE=1``: the real download code and the real imgutils code run on them.
"""
import hashlib
import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

QUALITY_CLASSES = ['poor', 'ok', 'good', 'excellent']

# Rows are RGB channel means in [-1, 1] (after normalize 0.5/0.5); columns are classes.
# A red image reads as `poor`, green as `ok`, blue as `good`, white as `excellent`.
COLOUR_WEIGHTS = {
    'poor': [1.0, -1.0, -1.0],
    'ok': [-1.0, 1.0, -1.0],
    'good': [-1.0, -1.0, 1.0],
    'excellent': [1.0, 1.0, 1.0],
}
CLASS_COLOURS = {
    'poor': (230, 20, 20),
    'ok': (20, 230, 20),
    'good': (20, 20, 230),
    'excellent': (250, 250, 250),
}

TEST_INPUT_SIZE = 32


def classifier_stages(size: int = TEST_INPUT_SIZE) -> List[dict]:
    """Preprocessing stages in imgutils' format, as in a published preprocessor_config.json."""
    return [
        {'type': 'resize', 'size': size + 8, 'interpolation': 'bicubic', 'max_size': None, 'antialias': True},
        {'type': 'center_crop', 'size': [size, size]},
        {'type': 'maybe_to_tensor'},
        {'type': 'normalize', 'mean': [0.5, 0.5, 0.5], 'std': [0.5, 0.5, 0.5]},
    ]


def colour_classifier_onnx(classes: Sequence[str] = QUALITY_CLASSES, softmax: bool = True,
                           metadata_classes: bool = True, gain: float = 3.0) -> bytes:
    """A classifier whose answer depends on the image's mean colour (see COLOUR_WEIGHTS).

    Input ``input`` ``[batch, 3, H, W]``, output ``output`` ``[batch, len(classes)]``:
    probabilities when ``softmax``, else logits. Metadata values are JSON-encoded like the
    published files.
    """
    weights = np.array([COLOUR_WEIGHTS[name] for name in classes], dtype=np.float32).T * gain
    nodes = [
        helper.make_node('GlobalAveragePool', ['input'], ['pooled']),
        helper.make_node('Flatten', ['pooled'], ['flat'], axis=1),
        helper.make_node('MatMul', ['flat', 'weights'], ['logits' if softmax else 'output']),
    ]
    if softmax:
        nodes.append(helper.make_node('Softmax', ['logits'], ['output'], axis=1))
    graph = helper.make_graph(
        nodes, 'colour_classifier',
        [helper.make_tensor_value_info('input', TensorProto.FLOAT, ['batch', 3, 'height', 'width'])],
        [helper.make_tensor_value_info('output', TensorProto.FLOAT, ['batch', len(classes)])],
        initializer=[numpy_helper.from_array(weights, 'weights')],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 14)])
    model.ir_version = 8
    metadata = {'task_type': 'classification', 'model_name': 'colour_classifier'}
    if metadata_classes:
        metadata['classes'] = list(classes)
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def classifier_repo_files(classes: Sequence[str] = QUALITY_CLASSES, softmax: bool = True,
                          metadata_classes: bool = True, config_classes: bool = True,
                          meta_classes: bool = True, with_onnx: bool = True,
                          size: int = TEST_INPUT_SIZE) -> Dict[str, bytes]:
    """Every file of a published face-quality repository, for the colour classifier."""
    files = {
        'preprocessor_config.json': json.dumps({
            'image_processor_type': 'ImgutilsBasedImageProcessor',
            'auto_map': {'AutoImageProcessor': 'processing.ImgutilsBasedImageProcessor'},
            'stages': classifier_stages(size),
        }).encode(),
        'config.json': json.dumps({
            'model_type': 'timm_model',
            'architectures': ['TimmModel'],
            'auto_map': {'AutoConfig': 'modeling.TimmModelConfig', 'AutoModel': 'modeling.TimmModel'},
            'model_name': 'colour_classifier',
            'model_args': {},
            'task_type': 'classification',
            'task_config': {'classes': list(classes)} if config_classes else {},
        }).encode(),
        'meta.json': json.dumps({
            **({'classes': list(classes)} if meta_classes else {}),
            'flops': 1000, 'params': 12, 'macs': 500,
        }).encode(),
        'README.md': b'# Test face-quality model\n',
    }
    if with_onnx:
        files['model.onnx'] = colour_classifier_onnx(classes, softmax=softmax, metadata_classes=metadata_classes)
    return files


def write_repo(cache_dir: str, repo_id: str, files: Dict[str, bytes], revision: str = 'main',
               known_missing: Sequence[str] = ('model.onnx',)) -> str:
    """Put a repository's files into a Hugging Face cache; returns the snapshot directory.

    ``known_missing`` files that are not in ``files`` get the marker huggingface_hub leaves
    after an online lookup found them absent (``.no_exist/{commit}/{path}``).
    """
    commit = hashlib.sha1((repo_id + revision).encode()).hexdigest()
    repo_dir = os.path.join(cache_dir, 'models--' + repo_id.replace('/', '--'))
    os.makedirs(os.path.join(repo_dir, 'refs'), exist_ok=True)
    with open(os.path.join(repo_dir, 'refs', revision), 'w') as f:
        f.write(commit)
    snapshot = os.path.join(repo_dir, 'snapshots', commit)
    for path in known_missing:
        if path not in files:
            marker = os.path.join(repo_dir, '.no_exist', commit, path)
            os.makedirs(os.path.dirname(marker), exist_ok=True)
            open(marker, 'wb').close()
    for path, content in files.items():
        target = os.path.join(snapshot, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, 'wb') as f:
            f.write(content)
    return snapshot


def write_local_dir(directory: str, files: Dict[str, bytes]) -> str:
    for path, content in files.items():
        target = os.path.join(directory, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, 'wb') as f:
            f.write(content)
    return directory


def solid_image(colour, size=(48, 40), mode: Optional[str] = None):
    from PIL import Image
    return Image.new('RGB', size, colour) if mode is None else Image.new('RGB', size, colour).convert(mode)


# --- Detectors -------------------------------------------------------------------------
#
# Tiny YOLOv8-style detectors for imgutils' `yolo_predict`: input `images` [1, 3, S, S] in
# [0, 1], output `output0` [1, 4 + 1, N], one candidate box per cell of a fixed grid whose
# score is the share of the cell covered by the object's colour:
#   face: a bright, saturated pixel (max channel above 0.7; the class colours and white)
#   head: any pixel brighter than black (grey head, or a face on it)
# Test scenes are black, with grey 64 x 64 heads and 32 x 32 coloured faces on the grids.

DETECTOR_INPUT_SIZE = 64
FACE_GRID = 8
HEAD_GRID = 4
HEAD_GREY = (128, 128, 128)


def grid_detector_onnx(label: str, grid: int, low: float, gain: float, size: int = DETECTOR_INPUT_SIZE) -> bytes:
    cell = size // grid
    centres = (np.arange(grid, dtype=np.float32) + 0.5) * cell
    cy, cx = np.meshgrid(centres, centres, indexing='ij')
    boxes = np.stack([cx.ravel(), cy.ravel(), np.full(grid * grid, cell, np.float32),
                      np.full(grid * grid, cell, np.float32)])[None].astype(np.float32)
    nodes = [
        helper.make_node('ReduceMax', ['images'], ['brightness'], axes=[1], keepdims=1),
        helper.make_node('Sub', ['brightness', 'low'], ['shifted']),
        helper.make_node('Mul', ['shifted', 'gain'], ['scaled']),
        helper.make_node('Clip', ['scaled', 'zero', 'one'], ['indicator']),
        helper.make_node('AveragePool', ['indicator'], ['pooled'], kernel_shape=[cell, cell], strides=[cell, cell]),
        helper.make_node('Reshape', ['pooled', 'score_shape'], ['scores']),
        helper.make_node('Concat', ['boxes', 'scores'], ['output0'], axis=1),
    ]
    initializers = [
        numpy_helper.from_array(np.array(low, np.float32), 'low'),
        numpy_helper.from_array(np.array(gain, np.float32), 'gain'),
        numpy_helper.from_array(np.array(0.0, np.float32), 'zero'),
        numpy_helper.from_array(np.array(1.0, np.float32), 'one'),
        numpy_helper.from_array(np.array([1, 1, grid * grid], np.int64), 'score_shape'),
        numpy_helper.from_array(boxes, 'boxes'),
    ]
    graph = helper.make_graph(
        nodes, f'{label}_grid_detector',
        [helper.make_tensor_value_info('images', TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info('output0', TensorProto.FLOAT, [1, 5, grid * grid])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 14)])
    model.ir_version = 8
    for key, value in {'names': repr({0: label}), 'imgsz': json.dumps([size, size])}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    return model.SerializeToString()


def detector_repo_files(model_name: str, label: str, grid: int, low: float, gain: float) -> Dict[str, bytes]:
    return {
        f'{model_name}/model.onnx': grid_detector_onnx(label, grid, low, gain),
        f'{model_name}/model_type.json': json.dumps({'model_type': 'yolo'}).encode(),
    }


FACE_DETECTOR_REPO = 'deepghs/anime_face_detection'
HEAD_DETECTOR_REPO = 'deepghs/anime_head_detection'


def face_detector_files() -> Dict[str, bytes]:
    return detector_repo_files('face_detect_v1.4_s', 'face', FACE_GRID, low=0.7, gain=5.0)


def head_detector_files() -> Dict[str, bytes]:
    return detector_repo_files('head_detect_v2.0_s', 'head', HEAD_GRID, low=0.25, gain=4.0)


def cell_box(column: int, row: int, grid: int, image_size) -> Tuple[int, int, int, int]:
    width, height = image_size
    return (column * width // grid, row * height // grid, (column + 1) * width // grid, (row + 1) * height // grid)


def draw_scene(image_size=(256, 256), heads=(), bare_faces=()):
    """A black frame with grey heads and coloured faces on the detector grids.

    :param heads: ``(head_column, head_row, face_colour)`` on the 4 x 4 head grid; the face is
        drawn in the lower-right quarter of its head (face-grid cell ``2c + 1, 2r + 1``).
    :param bare_faces: ``(face_column, face_row, face_colour)`` on the 8 x 8 face grid, with
        no head drawn around them.
    :return: ``(image, expected)`` where ``expected`` lists ``(face_box, head_box or None,
        colour)`` in row-major order of the faces.
    """
    from PIL import Image, ImageDraw
    image = Image.new('RGB', image_size, (0, 0, 0))
    draw = ImageDraw.Draw(image)
    expected = []
    for column, row, colour in heads:
        head = cell_box(column, row, HEAD_GRID, image_size)
        face = cell_box(2 * column + 1, 2 * row + 1, FACE_GRID, image_size)
        draw.rectangle((head[0], head[1], head[2] - 1, head[3] - 1), fill=HEAD_GREY)
        draw.rectangle((face[0], face[1], face[2] - 1, face[3] - 1), fill=colour)
        expected.append((face, head, colour))
    for column, row, colour in bare_faces:
        face = cell_box(column, row, FACE_GRID, image_size)
        draw.rectangle((face[0], face[1], face[2] - 1, face[3] - 1), fill=colour)
        expected.append((face, None, colour))
    expected.sort(key=lambda item: (item[0][1], item[0][0]))
    return image, expected
