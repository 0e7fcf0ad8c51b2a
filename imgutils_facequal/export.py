"""Turning any repository in the published layout into a local ONNX model directory.

Some published repositories carry no ``model.onnx`` (the exporter skips it when the export
does not come out as a single file). `export_onnx` loads the model the card's way
(transformers, needs the ``torch`` extra), exports it to ONNX, checks that the ONNX model
gives the same probabilities as torch on real preprocessed images, and only then writes
the directory. The ONNX backend (the default) then runs it without torch.

Exports land in ``$IMGUTILS_FACEQUAL_HOME/exports`` (default
``~/.cache/imgutils_facequal/exports``), one directory per repository, and are found from
then on by the same ``model_name`` as the repository, offline too. An export to any other
directory is used by passing that directory as ``model_name``.
"""
import json
import logging
import os
import shutil
import tempfile
import warnings
from typing import Any, List, Optional, Sequence

from .backends.onnx import FaceQualityOnnxModel
from .backends.transformers import FaceQualityTransformersModel, require_torch_extra
from .errors import ExportCheckError
from .graphs.check import CHECK_TOLERANCE, check_images
from .graphs.torch_rewrites import rewrite_for_export
from .home import export_dir_for, exports_dir
from .hub import fetch_model_file
from .images import load_rgb_image
from .models import DEFAULT_MODEL, ModelSource, resolve_model

__all__ = ['export_onnx']

logger = logging.getLogger('imgutils_facequal')

_SMALL_FILES = ('preprocessor_config.json', 'config.json', 'meta.json', 'README.md')
_WEIGHT_SUFFIXES = ('.safetensors', '.bin', '.pt', '.pth', '.ckpt', '.onnx')
_SMALL_FILE_LIMIT = 5 * 1024 * 1024


def _copy_small_files(source: ModelSource, target: str) -> List[str]:
    copied = []
    if source.is_local:
        for name in sorted(os.listdir(source.local_dir)):
            path = os.path.join(source.local_dir, name)
            if (os.path.isfile(path) and not name.endswith(_WEIGHT_SUFFIXES)
                    and os.path.getsize(path) <= _SMALL_FILE_LIMIT):
                shutil.copy2(path, os.path.join(target, name))
                copied.append(name)
        return copied
    for name in _SMALL_FILES:
        path = fetch_model_file(source, name, required=False)
        if path is not None:
            shutil.copyfile(path, os.path.join(target, name))
            copied.append(name)
    return copied


def _export_graph(model, example, path: str, opset: int) -> None:
    import torch

    class ProbabilityGraph(torch.nn.Module):
        def __init__(self, wrapped):
            super().__init__()
            self.wrapped = wrapped

        def forward(self, input):  # noqa: A002 - the published input name
            output = self.wrapped(input)
            return getattr(output, 'logits', output)

    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # the TorchScript exporter announces its own deprecation
        torch.onnx.export(
            ProbabilityGraph(model).eval(), (example,), path,
            input_names=['input'], output_names=['output'],
            dynamic_axes={'input': {0: 'batch'}, 'output': {0: 'batch'}},
            opset_version=opset, dynamo=False,
            custom_opsets={'com.microsoft': 1},  # onnxruntime's MultiHeadAttention, see export_rewrites
        )


def _write_metadata(path: str, metadata: dict) -> None:
    import onnx
    graph = onnx.load(path)
    for key, value in metadata.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.save(graph, path)


def export_onnx(model_name: str = DEFAULT_MODEL, output_dir: Optional[str] = None,
                revision: Optional[str] = None, images: Optional[Sequence[Any]] = None,
                atol: float = CHECK_TOLERANCE, opset: int = 17, overwrite: bool = False,
                rewrite: bool = True) -> str:
    """Export a model to a local ONNX directory the ONNX backend loads, after checking it.

    The directory holds ``model.onnx`` (input ``input``, output ``output`` with
    probabilities, dynamic batch, opset 17, the classes in JSON-encoded metadata like the
    published files) and the repository's ``preprocessor_config.json``, ``config.json``,
    ``meta.json`` and ``README.md``.

    Before anything is written, the export checks itself on ``images`` (default
    `check_images`): the ONNX graph must give torch's probabilities within ``atol``
    on the same preprocessed tensors, and the whole ONNX path (imgutils' pillow
    preprocessing, then onnxruntime) must give the transformers path's probabilities within
    ``atol``. Otherwise `ExportCheckError` is raised and no directory is left behind.

    :param model_name: Registered name, hub repository id or local directory.
    :param output_dir: Where to write; default `export_dir_for` the model, where
        ``model_name`` finds it from then on.
    :param revision: Hub revision.
    :param images: Images (anything ``ImageTyping`` accepts) for the check.
    :param atol: Tolerance of the check, per class probability.
    :param opset: ONNX opset. 17 by default, for its native ``LayerNormalization`` (the
        published files' opset 14 spells layer norms out in elementary operations); on
        caformer_s36 the two ran at the same speed within the noise of the benchmark.
    :param overwrite: Replace an existing ``output_dir``.
    :param rewrite: Trace a copy of timm MetaFormer models (caformer, convformer) rewritten
        by `rewrite_for_export`: the same function
        with fewer memory passes, faster in onnxruntime (see the performance page). The
        check below compares against the untouched model either way. ``False`` traces the model
        literally. The rewrites applied are recorded
        in the ``rewrites`` metadata of ``model.onnx``.
    :return: The directory written.
    :raises BackendNotAvailableError: Without the ``torch`` extra.
    :raises ExportCheckError: When the check fails.

    Example:

        >>> from imgutils_facequal import export_onnx, classify_face_quality
        >>> export_onnx('caformer_s36')  # doctest: +SKIP
        '/home/me/.cache/imgutils_facequal/exports/deepghs-cv--cls-bangumibase-face-quality.caformer_s36'
        >>> classify_face_quality('face.png', model_name='caformer_s36')  # the export, no torch  # doctest: +SKIP
        ('good', 0.93)
    """
    require_torch_extra('Exporting to ONNX')

    source = resolve_model(model_name, revision=revision)
    target = os.path.abspath(output_dir or export_dir_for(source) or
                             os.path.join(exports_dir(), os.path.basename(source.local_dir.rstrip(os.sep))))
    if os.path.exists(target) and not overwrite:
        raise FileExistsError(f'{target!r} already exists; pass overwrite=True to replace it.')
    decoded = [load_rgb_image(image) for image in (images if images is not None else check_images())]
    logger.info('Exporting %s (%s): loading it with transformers...', source.model_name, source.location)
    model = FaceQualityTransformersModel(source, 'cpu')

    os.makedirs(os.path.dirname(target), exist_ok=True)
    staging = tempfile.mkdtemp(prefix='.facequal-export-', dir=os.path.dirname(target))
    try:
        onnx_path = os.path.join(staging, 'model.onnx')
        tensors = model.preprocess(decoded)
        traced, rewrites = rewrite_for_export(model.model) if rewrite else (model.model, [])
        logger.info('Tracing it to ONNX (opset %d, rewrites: %s)...', opset, ', '.join(rewrites) or 'none')
        _export_graph(traced, tensors[:1], onnx_path, opset)
        del traced
        config = model.model.config
        _write_metadata(onnx_path, {
            'classes': model.classes,
            'task_type': getattr(config, 'task_type', 'classification'),
            'model_name': getattr(config, 'model_name', None),
            'exported_from': source.location,
            'exported_by': 'imgutils-facequal',
            'opset': opset,
            'rewrites': rewrites,
        })
        _copy_small_files(source, staging)

        logger.info('Checking the export against torch on %d images...', len(decoded))
        torch_probabilities = model.predict(tensors)
        exported = FaceQualityOnnxModel(ModelSource(model_name=source.model_name, local_dir=staging),
                                        'CPUExecutionProvider')
        graph_difference = float(abs(exported.predict(tensors.numpy()) - torch_probabilities).max())
        onnx_path_probabilities = [list(scores.values()) for scores in exported.scores(decoded)]
        path_difference = float(abs(torch_probabilities - onnx_path_probabilities).max())
        if exported.classes != model.classes or max(graph_difference, path_difference) > atol:
            raise ExportCheckError(
                f'The ONNX export of {source.model_name!r} ({source.location}) does not reproduce torch: '
                f'on {len(decoded)} images the largest probability difference is {graph_difference:.3g} '
                f'on the same tensors and {path_difference:.3g} end to end (pillow preprocessing and '
                f'onnxruntime against the transformers processor and torch), allowed {atol:g}; classes '
                f'{exported.classes} against {model.classes}. Nothing was written. The graph may hold '
                f'code that tracing does not capture; use the transformers backend for this model.'
            )
        del exported
        if os.path.exists(target):
            shutil.rmtree(target)
        os.replace(staging, target)
        logger.info('Checked (largest difference %.1e) and written to %s.', max(graph_difference, path_difference),
                    target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
