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
import functools
import importlib
import importlib.util
import sys
import threading
from contextlib import contextmanager

__all__ = ['pillow_transforms', 'detect_module']

_lock = threading.RLock()


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


def pillow_transforms():
    """``imgutils.preprocess.pillow`` (``create_pillow_transforms`` and friends)."""
    name = 'imgutils.preprocess.pillow'
    if name in sys.modules:
        return sys.modules[name]
    with _lock:
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


def detect_module():
    """imgutils' face and head detectors and its visualiser, imported light (once)."""
    with _lock:
        return _detect_functions()


@functools.lru_cache(maxsize=None)
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
