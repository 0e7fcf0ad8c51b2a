"""Detectors of the real architecture and cost: YOLOv8-shaped ONNX graphs with random weights.

imgutils' default detectors (``face_detect_v1.4_s``, ``head_detect_v2.0_s``) are YOLOv8s
graphs run at 640 x 640: 11.1M parameters, about 28.6 GFLOPs per image. The graphs built
here are that network (Conv-BN-SiLU, C2f, SPPF, the PAN neck and the decoupled head with
DFL, ``width``/``depth`` multiples of YOLOv8s or YOLOv8n), exported with torch, with
imgutils' metadata (``names``, ``imgsz``) and dynamic batch, height and width axes.

With random weights the network's own boxes mean nothing, so the detections come from the
image instead, as with the tests' tiny grid detectors (`tests.support.fake_hub`): one
candidate per cell of a fixed grid over the image, scored by the share of the cell the
object's colour covers. The network's real output feeds those candidates (its mean, times
1e-9, is added to them), so no runtime can prune the network away, and every path sees the
same faces. Scenes drawn with `tests.support.fake_hub.draw_scene` are found by both kinds.
"""
import json
from typing import Dict

#: YOLOv8 scales: (depth multiple, width multiple, max channels).
SCALES = {'n': (0.33, 0.25, 1024), 's': (0.33, 0.50, 1024)}


def _modules(torch):
    nn = torch.nn

    class Conv(nn.Module):
        def __init__(self, c1, c2, k=1, s=1):
            super().__init__()
            self.conv = nn.Conv2d(c1, c2, k, s, k // 2, bias=False)
            self.bn = nn.BatchNorm2d(c2, eps=1e-3, momentum=0.03)
            self.act = nn.SiLU()

        def forward(self, x):
            return self.act(self.bn(self.conv(x)))

    class Bottleneck(nn.Module):
        def __init__(self, c, shortcut):
            super().__init__()
            self.cv1, self.cv2, self.add = Conv(c, c, 3), Conv(c, c, 3), shortcut

        def forward(self, x):
            y = self.cv2(self.cv1(x))
            return x + y if self.add else y

    class C2f(nn.Module):
        def __init__(self, c1, c2, n=1, shortcut=False):
            super().__init__()
            self.c = c2 // 2
            self.cv1 = Conv(c1, 2 * self.c, 1)
            self.cv2 = Conv((2 + n) * self.c, c2, 1)
            self.m = nn.ModuleList(Bottleneck(self.c, shortcut) for _ in range(n))

        def forward(self, x):
            y = list(self.cv1(x).chunk(2, 1))
            y.extend(m(y[-1]) for m in self.m)
            return self.cv2(torch.cat(y, 1))

    class SPPF(nn.Module):
        def __init__(self, c1, c2, k=5):
            super().__init__()
            c = c1 // 2
            self.cv1, self.cv2 = Conv(c1, c, 1), Conv(c * 4, c2, 1)
            self.m = nn.MaxPool2d(k, 1, k // 2)

        def forward(self, x):
            y = [self.cv1(x)]
            y.extend(self.m(y[-1]) for _ in range(3))
            return self.cv2(torch.cat(y, 1))

    class Detect(nn.Module):
        """YOLOv8's head: box distributions (DFL, 16 bins) and class scores on strides 8, 16, 32."""

        def __init__(self, nc, ch):
            super().__init__()
            self.nc, self.reg_max = nc, 16
            c2, c3 = max(16, ch[0] // 4, 4 * self.reg_max), max(ch[0], min(nc, 100))
            self.cv2 = nn.ModuleList(nn.Sequential(Conv(x, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 4 * self.reg_max, 1))
                                     for x in ch)
            self.cv3 = nn.ModuleList(nn.Sequential(Conv(x, c3, 3), Conv(c3, c3, 3), nn.Conv2d(c3, nc, 1)) for x in ch)
            self.register_buffer('bins', torch.arange(self.reg_max, dtype=torch.float32).view(1, 1, -1, 1))

        def forward(self, features):
            outputs = []
            for i, x in enumerate(features):
                stride = 8 * 2 ** i
                b, _, h, w = x.shape
                dist = self.cv2[i](x).view(b, 4, self.reg_max, -1).softmax(2)
                dist = (dist * self.bins).sum(2)  # b, 4, h*w
                ys = (torch.arange(h, dtype=torch.float32) + 0.5).view(-1, 1).expand(h, w).reshape(1, -1)
                xs = (torch.arange(w, dtype=torch.float32) + 0.5).view(1, -1).expand(h, w).reshape(1, -1)
                x0, y0 = xs - dist[:, 0], ys - dist[:, 1]
                x1, y1 = xs + dist[:, 2], ys + dist[:, 3]
                box = torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], 1) * stride
                outputs.append(torch.cat([box, self.cv3[i](x).view(b, self.nc, -1).sigmoid()], 1))
            return torch.cat(outputs, 2)

    class YOLOv8(nn.Module):
        def __init__(self, scale, nc):
            super().__init__()
            depth, width, max_channels = SCALES[scale]

            def c(channels):
                return int(min(channels, max_channels) * width)

            def n(repeats):
                return max(round(repeats * depth), 1)

            self.backbone = nn.ModuleList([
                Conv(3, c(64), 3, 2), Conv(c(64), c(128), 3, 2), C2f(c(128), c(128), n(3), True),
                Conv(c(128), c(256), 3, 2), C2f(c(256), c(256), n(6), True),
                Conv(c(256), c(512), 3, 2), C2f(c(512), c(512), n(6), True),
                Conv(c(512), c(1024), 3, 2), C2f(c(1024), c(1024), n(3), True), SPPF(c(1024), c(1024)),
            ])
            self.up = nn.Upsample(scale_factor=2, mode='nearest')
            self.h12 = C2f(c(1024) + c(512), c(512), n(3))
            self.h15 = C2f(c(512) + c(256), c(256), n(3))
            self.h16 = Conv(c(256), c(256), 3, 2)
            self.h18 = C2f(c(256) + c(512), c(512), n(3))
            self.h19 = Conv(c(512), c(512), 3, 2)
            self.h21 = C2f(c(512) + c(1024), c(1024), n(3))
            self.detect = Detect(nc, (c(256), c(512), c(1024)))

        def forward(self, x):
            saved = {}
            for index, layer in enumerate(self.backbone):
                x = layer(x)
                saved[index] = x
            p12 = self.h12(torch.cat([self.up(saved[9]), saved[6]], 1))
            p15 = self.h15(torch.cat([self.up(p12), saved[4]], 1))
            p18 = self.h18(torch.cat([self.h16(p15), p12], 1))
            p21 = self.h21(torch.cat([self.h19(p18), saved[9]], 1))
            return self.detect([p15, p18, p21])

    class GridCandidates(nn.Module):
        """The network, with its output feeding one candidate per grid cell, scored by colour coverage."""

        def __init__(self, scale, grid, low, gain):
            super().__init__()
            self.net = YOLOv8(scale, 1)
            self.grid, self.low, self.gain = grid, low, gain

        def forward(self, images):
            b, _, h, w = images.shape
            g = self.grid
            indicator = ((images.amax(1) - self.low) * self.gain).clamp(0, 1)  # b, h, w
            scores = indicator.reshape(b, g, h // g, g, w // g).mean((2, 4)).reshape(b, 1, g * g)
            centres = torch.arange(g, dtype=torch.float32) + 0.5
            cy = (centres.view(-1, 1).expand(g, g).reshape(1, -1) * (h / g)).to(images.dtype)
            cx = (centres.view(1, -1).expand(g, g).reshape(1, -1) * (w / g)).to(images.dtype)
            boxes = torch.stack([cx, cy, torch.ones_like(cx) * (w / g), torch.ones_like(cy) * (h / g)], 1)
            candidates = torch.cat([boxes.expand(b, 4, g * g), scores], 1)
            return candidates + 1e-9 * self.net(images).mean((1, 2)).view(b, 1, 1)

    return YOLOv8, GridCandidates


def yolov8_module(scale: str = 's', nc: int = 1, seed: int = 0):
    """The bare YOLOv8 network of ``scale`` (``'s'`` or ``'n'``), random weights, in eval mode."""
    import torch
    yolo, _ = _modules(torch)
    torch.manual_seed(seed)
    return yolo(scale, nc).eval()


def yolo_grid_detector_onnx(label: str, grid: int, low: float, gain: float, scale: str = 's', size: int = 640,
                            seed: int = 0) -> bytes:
    """A YOLOv8 ``scale`` graph whose detections are the colour-coverage grid candidates.

    Input ``images`` ``[batch, 3, height, width]`` in [0, 1] (height and width multiples of
    32 and of ``grid``), output ``output0`` ``[batch, 5, grid * grid]``: ``cx, cy, w, h, score``
    in input pixels, as a YOLOv8 export gives them. Metadata as imgutils reads it.
    """
    import io
    import warnings

    import onnx
    import torch
    _, grid_candidates = _modules(torch)
    torch.manual_seed(seed)
    module = grid_candidates(scale, grid, low, gain).eval()
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)  # the TorchScript exporter: dynamic axes, no onnxscript
        torch.onnx.export(module, (torch.rand(1, 3, size, size),), buffer, input_names=['images'],
                          output_names=['output0'], opset_version=17, dynamo=False,
                          dynamic_axes={'images': {0: 'batch', 2: 'height', 3: 'width'}, 'output0': {0: 'batch'}})
    model = onnx.load_from_string(buffer.getvalue())
    for key, value in {'names': repr({0: label}), 'imgsz': json.dumps([size, size]),
                       'task': 'detect', 'stride': '32'}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model.SerializeToString()


def yolo_detector_repo_files(model_name: str, label: str, grid: int, low: float, gain: float,
                             scale: str = 's', seed: int = 0) -> Dict[str, bytes]:
    return {
        f'{model_name}/model.onnx': yolo_grid_detector_onnx(label, grid, low, gain, scale, seed=seed),
        f'{model_name}/model_type.json': json.dumps({'model_type': 'yolo'}).encode(),
    }


def yolo_face_detector_files(levels=('s',), version: str = 'v1.4') -> Dict[str, bytes]:
    """``deepghs/anime_face_detection`` with YOLOv8 graphs of each level (``face_detect_{version}_{level}``)."""
    from .fake_hub import FACE_GRID
    files = {}
    for level in levels:
        files.update(yolo_detector_repo_files(f'face_detect_{version}_{level}', 'face', FACE_GRID, 0.7, 5.0, level,
                                              seed=1))
    return files


def yolo_head_detector_files(levels=('s',), version: str = 'v2.0') -> Dict[str, bytes]:
    """``deepghs/anime_head_detection`` with YOLOv8 graphs of each level (``head_detect_{version}_{level}``)."""
    from .fake_hub import HEAD_GRID
    files = {}
    for level in levels:
        files.update(yolo_detector_repo_files(f'head_detect_{version}_{level}', 'head', HEAD_GRID, 0.25, 4.0, level,
                                              seed=2))
    return files
