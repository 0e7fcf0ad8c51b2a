"""What checks of one graph against another use: the images, the tolerance, and outputs as probabilities.

The graph cache checks a rewrite against the original graph, and ``export_onnx`` checks an
export against torch, on the same images and to the same tolerance.
"""
from typing import Any, List

__all__ = ['CHECK_TOLERANCE', 'check_images', 'probabilities_from_output']

#: Largest absolute difference allowed between two graphs' probabilities, per class.
CHECK_TOLERANCE = 1e-4

_PROBABILITY_TOLERANCE = 1e-3


def check_images() -> List[Any]:
    """The varied images a check runs on: sizes, aspect ratios, colours, textures."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(20261125)
    images = []
    for width, height in [(384, 384), (512, 320), (200, 640), (97, 61), (1024, 768), (33, 400)]:
        x = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
        y = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
        phase = rng.uniform(0, 6.28, size=3).astype(np.float32)
        gradient = 0.5 + 0.5 * np.sin(6 * x + 4 * y + phase)
        noise = rng.uniform(-0.2, 0.2, size=(height, width, 3)).astype(np.float32)
        pixels = np.clip(gradient + noise, 0, 1) * 255
        images.append(Image.fromarray(pixels.astype(np.uint8), 'RGB'))
    images.append(Image.new('RGB', (300, 300), (255, 255, 255)))
    images.append(Image.new('RGB', (300, 200), (12, 30, 200)))
    return images


def probabilities_from_output(output):
    """Rows of a classifier output as probabilities.

    The published graphs end in a softmax. A graph that returns logits instead is detected
    by its rows not being probability distributions (a value outside [0, 1], or a row
    whose sum is not 1), and then every row gets a softmax.

    >>> probabilities_from_output([[0.25, 0.75]]).tolist()
    [[0.25, 0.75]]
    >>> probabilities_from_output([[0.0, 0.0]]).tolist()
    [[0.5, 0.5]]
    """
    import numpy as np
    output = np.asarray(output, dtype=np.float64)
    is_distribution = (
        np.all(output >= -_PROBABILITY_TOLERANCE) and np.all(output <= 1 + _PROBABILITY_TOLERANCE)
        and np.allclose(output.sum(axis=-1), 1.0, atol=_PROBABILITY_TOLERANCE)
    )
    if is_distribution:
        probabilities = np.clip(output, 0.0, None)
    else:
        shifted = output - output.max(axis=-1, keepdims=True)
        probabilities = np.exp(shifted)
    return probabilities / probabilities.sum(axis=-1, keepdims=True)
