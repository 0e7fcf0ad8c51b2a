"""Our own onnxruntime sessions of imgutils' YOLO detector files, for what imgutils cannot ask.

imgutils' ``yolo_predict`` always resizes an image to the size in the graph's ``imgsz``
metadata (640 x 640 for the face and head detectors). `YoloSession` reads the same
``{model_name}/model.onnx`` from the same hub repository and reproduces ``yolo_predict``
step for step (resize with Pillow's default filter, RGB in [0, 1], ``output0`` rows
``cx, cy, w, h, class scores``, confidence filter, greedy NMS with imgutils' ``+1`` areas,
boxes scaled back and rounded), so at the graph's own size its detections are imgutils'
own. What it adds is ``infer_size``: running the graph at a smaller square size (a
multiple of 32), which needs a graph exported with dynamic height and width; and
`YoloSession.predict_batch`: several images in one run, where the graph's batch axis is
dynamic, with each image's detections those of `YoloSession.predict` on it alone.

Sessions are opened once per model, on the provider imgutils would pick (``ONNX_MODE``,
else CUDA where onnxruntime has it), and shared by every thread (a lock serialises runs,
as imgutils does per session).
"""
import ast
import json
import os
import threading
from typing import List, Optional, Sequence, Tuple

from ...caching import cached
from ...hub import hub_download
from ...sessions import open_onnx_session

__all__ = ['YoloSession', 'yolo_session']

Detection = Tuple[Tuple[int, int, int, int], str, float]

#: Images per run of `YoloSession.predict_batch` by default: a YOLOv8s graph at 640 x 640 needs
#: a few hundred MB of activations per image, and larger batches gain no more on a GPU.
DEFAULT_MAX_BATCH = 8


def _nms(boxes, scores, iou_threshold: float) -> List[int]:
    """Greedy non-maximum suppression, exactly as imgutils does it (areas with ``+1``)."""
    import numpy as np
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[order[1:]]) - np.maximum(x1[i], x1[order[1:]]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[order[1:]]) - np.maximum(y1[i], y1[order[1:]]) + 1)
        inter = w * h
        iou = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[np.where(iou <= iou_threshold)[0] + 1]
    return keep


def _scale(value, new: float, old: int) -> int:
    import numpy as np
    return int(np.clip(value / new * old, a_min=0, a_max=old).round())


class YoloSession:
    """One YOLOv8-style detector graph in an onnxruntime session of our own.

    :param path: The ``model.onnx`` file (with imgutils' ``names`` and optional ``imgsz`` metadata).
    :param default_threshold: The confidence threshold when a call gives none (imgutils reads
        ``threshold.json``; the face and head detectors pass theirs explicitly).

    Example:

        >>> from imgutils_facequal.plugins.builtin.yolo_sessions import yolo_session
        >>> session = yolo_session('deepghs/anime_head_detection', 'head_detect_v2.0_s')  # doctest: +SKIP
        >>> session.predict(image, infer_size=320, conf_threshold=0.4)  # doctest: +SKIP
        [((120, 40, 260, 190), 'head', 0.91)]
    """

    def __init__(self, path: str, default_threshold: float = 0.25):
        # imgutils' provider choice; on a CPU, IMGUTILS_FACEQUAL_THREADS threads, else every core
        self.session = open_onnx_session(path, os.environ.get('ONNX_MODE'), 'The detector')
        metadata = self.session.get_modelmeta().custom_metadata_map
        size = tuple(json.loads(metadata['imgsz'])) if 'imgsz' in metadata else (640, 640)
        self.imgsz: Tuple[int, int] = (int(size[0]), int(size[1]))  # (height, width) as in the metadata
        names = ast.literal_eval(metadata['names'])
        self.labels: List[str] = [names[index] for index in range(len(names))]
        shape = self.session.get_inputs()[0].shape
        self.dynamic_size = not all(isinstance(value, int) for value in shape[2:])
        self.dynamic_batch = not isinstance(shape[0], int)
        self.default_threshold = default_threshold
        self._lock = threading.Lock()

    def input_size(self, infer_size: Optional[int] = None) -> Tuple[int, int]:
        """``(width, height)`` the image is resized to: the graph's ``imgsz``, or ``infer_size`` square.

        :raises ValueError: When ``infer_size`` is not a positive multiple of 32, or the graph
            has fixed spatial axes and ``infer_size`` differs from them.
        """
        height, width = self.imgsz
        if infer_size is None or (infer_size, infer_size) == (height, width):
            return width, height
        if not isinstance(infer_size, int) or infer_size < 32 or infer_size % 32:
            raise ValueError(f'infer_size is a detector input size, a multiple of 32; got {infer_size!r}.')
        if not self.dynamic_size:
            raise ValueError(f'This detector graph has a fixed input size ({height} x {width}); it cannot run at '
                             f'infer_size={infer_size}. Leave infer_size unset for it.')
        return infer_size, infer_size

    def predict(self, image, infer_size: Optional[int] = None, conf_threshold: Optional[float] = None,
                iou_threshold: float = 0.7) -> List[Detection]:
        """``[((x0, y0, x1, y1), label, score), ...]`` for a PIL image, in its own pixels.

        :param infer_size: Square size the graph runs at (default its ``imgsz``, as in imgutils).
        """
        return self.predict_batch([image], infer_size, conf_threshold, iou_threshold)[0]

    def predict_batch(self, images: Sequence, infer_size: Optional[int] = None,
                      conf_threshold: Optional[float] = None, iou_threshold: float = 0.7,
                      max_batch: int = DEFAULT_MAX_BATCH) -> List[List[Detection]]:
        """`predict` on each of several PIL images: one list of detections per image, in order.

        Up to ``max_batch`` images go through the graph in one run when its batch axis is
        dynamic (else one run per image). Images of different sizes are fine: each is
        stretched to the same input size, as imgutils does with one image (no letterboxing),
        and its boxes are scaled back to its own pixels, so each image's detections are those
        `predict` gives it alone.

        :param max_batch: Images per run at most; a longer list runs in chunks.
        :raises ValueError: As `input_size`, or when ``max_batch`` is under 1.
        """
        import numpy as np
        if not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f'max_batch is the number of images per run, 1 or more; got {max_batch!r}.')
        new_size = self.input_size(infer_size)
        threshold = self.default_threshold if conf_threshold is None else conf_threshold
        images = [image.convert('RGB') if image.mode != 'RGB' else image for image in images]
        step = max_batch if self.dynamic_batch else 1
        detections = []
        for start in range(0, len(images), step):
            chunk = images[start:start + step]
            data = np.stack([np.asarray(image.resize(new_size)).transpose(2, 0, 1) for image in chunk])
            data = (data / 255.0).astype(np.float32)
            with self._lock:
                output, = self.session.run(['output0'], {'images': data})
            detections.extend(self._postprocess(rows, threshold, iou_threshold, image.size, new_size)
                              for rows, image in zip(output, chunk))
        return detections

    def _postprocess(self, output, conf_threshold: float, iou_threshold: float, old_size: Sequence[int],
                     new_size: Sequence[int]) -> List[Detection]:
        output = output[:, output[4:, :].max(axis=0) > conf_threshold].transpose(1, 0)
        if not output.size:
            return []
        centre, extent = output[:, :2], output[:, 2:4]
        boxes = output[:, :4].copy()
        boxes[:, :2], boxes[:, 2:] = centre - extent / 2, centre + extent / 2
        scores = output[:, 4:]
        keep = _nms(boxes, scores.max(axis=1), iou_threshold)
        detections = []
        for box, score in zip(boxes[keep], scores[keep]):
            x0, x1 = (_scale(value, new_size[0], old_size[0]) for value in (box[0], box[2]))
            y0, y1 = (_scale(value, new_size[1], old_size[1]) for value in (box[1], box[3]))
            best = int(score.argmax())
            detections.append(((x0, y0, x1, y1), self.labels[best], float(score[best])))
        return detections


@cached(per_process=True, maxsize=16)
def yolo_session(repo_id: str, model_name: str, default_threshold: float = 0.25) -> YoloSession:
    """The shared `YoloSession` of ``{model_name}/model.onnx`` in hub repo ``repo_id`` (downloaded once; from the
    cache alone when the hub does not answer, see `imgutils_facequal.hub.hub_download`).

    Shared per process: a forked child opens its own (the parent's sessions need thread pools
    the child does not have).
    """
    return YoloSession(hub_download(repo_id, f'{model_name}/model.onnx'), default_threshold)
