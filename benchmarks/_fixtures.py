"""Shared set-up for the benchmarks: an offline Hugging Face cache holding the published
architecture (random-weight timm caformer_s36, 4 classes, 384 x 384, in the published
layout) and imgutils' detector repositories.

The detectors are of the real architecture and cost by default: YOLOv8s graphs at 640
(``face_detect_v1.4_s``, ``head_detect_v2.0_s``) and a YOLOv8n one (``head_detect_v2.0_n``),
random weights, imgutils' metadata, detections fed from the image's colours so that every
path sees the same faces (`tests.support.yolo_graphs`). ``FACEQUAL_BENCH_DETECTORS=tiny``
serves the tests' near-free grid detectors instead (a work folder holds one kind).

Import this module first: it sets the environment before huggingface_hub is imported.
Run the benchmarks from the repository root (``python -m benchmarks.NAME``).
"""
import contextlib
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.environ.get('FACEQUAL_BENCH_WORK') or tempfile.mkdtemp(prefix='facequal-bench-')
os.environ.update(HF_HOME=os.path.join(WORK, 'home'), HF_HUB_CACHE=os.path.join(WORK, 'hub'), HF_HUB_OFFLINE='1',
                  IMGUTILS_FACEQUAL_HOME=os.path.join(WORK, 'facequal'), IMGUTILS_FACEQUAL_PLUGINS='',
                  FACEQUAL_BENCH_WORK=WORK)
os.environ.setdefault('ONNX_MODE', 'cpu')
DETECTORS = os.environ.setdefault('FACEQUAL_BENCH_DETECTORS', 'yolo')

CAFORMER_REPO = 'bench-org/cls-face-quality.caformer_s36'
CAFORMER_NO_ONNX_REPO = 'bench-org/cls-face-quality.caformer_s36.no-onnx'


def build_hub(with_caformer: bool = True, published_onnx: bool = True) -> dict:
    """Write the repositories once per work folder; returns what was built.

    ``published_onnx=False`` leaves out the published-style ``model.onnx`` (and with it the
    repository that carries one), for runs that only use the transformers backend.
    """
    from tests.support.fake_hub import (FACE_DETECTOR_REPO, HEAD_DETECTOR_REPO, face_detector_files, head_detector_files,
                                        write_repo)
    marker = os.path.join(WORK, 'built')
    if not os.path.exists(marker):
        if DETECTORS == 'tiny':
            faces, heads = face_detector_files(), head_detector_files()
        else:
            from tests.support.yolo_graphs import yolo_face_detector_files, yolo_head_detector_files
            faces, heads = yolo_face_detector_files(('s',)), yolo_head_detector_files(('s', 'n'))
        write_repo(os.environ['HF_HUB_CACHE'], FACE_DETECTOR_REPO, faces)
        write_repo(os.environ['HF_HUB_CACHE'], HEAD_DETECTOR_REPO, heads)
        if with_caformer:
            from tests.support.timm_repos import timm_repo_files
            files = timm_repo_files('caformer_s36', size=384, seed=0, with_onnx=published_onnx)
            if published_onnx:
                write_repo(os.environ['HF_HUB_CACHE'], CAFORMER_REPO, files)
            write_repo(os.environ['HF_HUB_CACHE'], CAFORMER_NO_ONNX_REPO,
                       {name: data for name, data in files.items() if name != 'model.onnx'})
        open(marker, 'w').close()
    return {'work': WORK, 'classifier': CAFORMER_REPO, 'detectors': DETECTORS}


@contextlib.contextmanager
def rewrites_off():
    """Models loaded inside run their ONNX graphs as published (and cache nothing)."""
    from imgutils_facequal.graphs.cache import REWRITE_ENV
    os.environ[REWRITE_ENV] = '0'
    try:
        yield
    finally:
        del os.environ[REWRITE_ENV]


def graph_as_published(model_name: str, provider_mode: str = None):
    """``model_name``'s model.onnx run exactly as published, not rewritten (a model the backend does not cache)."""
    from imgutils_facequal.models import resolve_model
    from imgutils_facequal.backends.onnx import FaceQualityOnnxModel
    with rewrites_off():
        return FaceQualityOnnxModel(resolve_model(model_name), FaceQualityOnnxModel.device_key(provider_mode))


def openvino_graph_as_published(model_name: str):
    """The openvino backend's model of ``model_name``'s model.onnx as published, not rewritten for OpenVINO."""
    from imgutils_facequal.models import resolve_model
    from imgutils_facequal.backends.openvino import FaceQualityOpenVINOModel
    with rewrites_off():
        return FaceQualityOpenVINOModel(resolve_model(model_name))


def write_frames(directory: str, count: int, faces_per_image: int, size=(640, 384)):
    """Frames with heads and faces on the detectors' grids (4 x 4 heads, 8 x 8 faces); returns the paths."""
    from tests.support.fake_hub import CLASS_COLOURS, draw_scene
    os.makedirs(directory, exist_ok=True)
    colours = list(CLASS_COLOURS.values())
    cells = [(0, 0), (2, 0), (0, 2), (2, 2)]
    paths = []
    for index in range(count):
        heads = [(column, row, colours[(index + k) % 4]) for k, (column, row) in enumerate(cells[:faces_per_image])]
        image, _ = draw_scene(size, heads=heads)
        path = os.path.join(directory, f'{index:04d}.png')
        image.save(path)
        paths.append(path)
    return paths


def ensure_export(output_dir: str = None, rewrite: bool = True) -> str:
    """The project's export of the random caformer_s36 (made once per work folder); its folder.

    Without ``output_dir`` it goes where ``imgutils-facequal export`` puts it, so the
    repository's name finds it. The export runs in a child process, so no torch threads
    linger in the caller.
    """
    import subprocess
    from imgutils_facequal import exports_dir
    target = output_dir or os.path.join(exports_dir(), CAFORMER_NO_ONNX_REPO.replace('/', '--'))
    if not os.path.exists(os.path.join(target, 'model.onnx')):
        options = (f', output_dir={output_dir!r}' if output_dir else '') + ('' if rewrite else ', rewrite=False')
        subprocess.run([sys.executable, '-c', 'from benchmarks import _fixtures; from imgutils_facequal import export_onnx; '
                        f'export_onnx(_fixtures.CAFORMER_NO_ONNX_REPO{options})'], check=True, capture_output=True,
                       cwd=ROOT)
    return target


def matmul_calls(size):
    """One square fp32 matmul of ``size``, as numpy and as onnxruntime run it."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    a = np.random.rand(size, size).astype(np.float32)
    b = np.random.rand(size, size).astype(np.float32)
    # b as a constant, the way the classifier's weights are: onnxruntime packs it once, at load
    graph = helper.make_graph([helper.make_node('MatMul', ['a', 'b'], ['c'])], 'matmul',
                              [helper.make_tensor_value_info('a', TensorProto.FLOAT, [size, size])],
                              [helper.make_tensor_value_info('c', TensorProto.FLOAT, [size, size])],
                              [numpy_helper.from_array(b, 'b')])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count()
    session = ort.InferenceSession(model.SerializeToString(), options, providers=['CPUExecutionProvider'])
    return {'numpy': lambda: a @ b, 'onnxruntime': lambda: session.run(None, {'a': a})}
