"""imgutils' modules, imported without the package ``__init__`` files that pull in torch.

``imgutils.preprocess``, ``imgutils.generic`` and ``imgutils.detect`` import imgutils'
torchvision and transformers helpers in their ``__init__``, and those import torch and
transformers whenever they are installed: seconds and hundreds of MB before the first
face is scored, for code that never uses them. The modules this package needs
(the pillow transforms, the YOLO runner, the face and head detectors, the visualiser)
need neither, so they are loaded under temporary, empty parent packages. A later plain
``import imgutils.detect`` (or ``.preprocess``) runs the real ``__init__`` and reuses the
modules loaded here. If anything in that fails, the plain import is used instead.
"""
import importlib
import importlib.util
import sys
from contextlib import contextmanager
from typing import Any, Callable

from .caching import cached

__all__ = ['pillow_transforms', 'detect_module']


@contextmanager
def _bare_packages(*names):
    added = []
    try:
        for name in names:
            if name not in sys.modules:
                sys.modules[name] = importlib.util.module_from_spec(importlib.util.find_spec(name))
                added.append(name)
        yield
    finally:
        for name in added:
            del sys.modules[name]


@cached(per_process=False)  # one cache, so one lock: every loader edits the same entries of sys.modules
def _loaded(loader: Callable[[], Any]) -> Any:
    return loader()


def pillow_transforms():
    """``imgutils.preprocess.pillow`` (``create_pillow_transforms`` and friends)."""
    return _loaded(_pillow_module)


def detect_module() -> '_DetectFunctions':
    """imgutils' face and head detectors and its visualiser, imported light (once)."""
    return _loaded(_detect_functions)


def _pillow_module():
    name = 'imgutils.preprocess.pillow'
    try:
        with _bare_packages('imgutils.preprocess'):
            return importlib.import_module(name)
    except Exception:
        return importlib.import_module(name)


class _DetectFunctions:
    """``detect_faces``, ``detect_heads`` and ``detection_visualize`` from their own modules."""

    def __init__(self, face, head, visual):
        self.detect_faces = face.detect_faces
        self.detect_heads = head.detect_heads
        self.detection_visualize = visual.detection_visualize


def _detect_functions() -> _DetectFunctions:
    try:
        if 'imgutils.generic' in sys.modules or 'imgutils.detect' in sys.modules:
            raise ImportError('already imported the usual way')
        with _bare_packages('imgutils.preprocess', 'imgutils.generic', 'imgutils.detect'):
            yolo = importlib.import_module('imgutils.generic.yolo')
            sys.modules['imgutils.generic'].yolo_predict = yolo.yolo_predict
            modules = [importlib.import_module(f'imgutils.detect.{name}') for name in ('face', 'head', 'visual')]
    except Exception:
        modules = [importlib.import_module(f'imgutils.detect.{name}') for name in ('face', 'head', 'visual')]
    return _DetectFunctions(*modules)
