"""Image loading and the model's own preprocessing.

Preprocessing is never hard-coded: it is the ``stages`` list of the repository's
``preprocessor_config.json``, built with imgutils' pillow transforms (which need no torch).
"""
import io
import os
from typing import Any, Callable, List, Sequence

from ._imgutils import pillow_transforms
from .errors import ImageLoadError, ModelNotAvailableError

__all__ = [
    'load_rgb_image',
    'describe_image_input',
    'create_stage_transform',
    'images_to_batch',
]


def describe_image_input(image: Any) -> str:
    """A short, readable name for an image input, for error messages."""
    if isinstance(image, (bytes, bytearray)):
        return f'<{len(image)} bytes>'
    if hasattr(image, 'mode') and hasattr(image, 'size'):
        return f'<PIL image mode={image.mode} size={image.size}>'
    if hasattr(image, 'read'):
        return f'<file object {getattr(image, "name", type(image).__name__)!r}>'
    if isinstance(image, (str, os.PathLike)):
        return repr(os.fspath(image))
    return repr(image)


def _to_8bit(image):
    """Scale 16- and 32-bit integer images to 8 bits, so they do not clip to white."""
    import numpy as np
    from PIL import Image

    array = np.asarray(image, dtype=np.float64)
    high = float(array.max()) if array.size else 0.0
    scale = 255.0 / 65535.0 if high > 255 else 1.0
    return Image.fromarray(np.clip(np.round(array * scale), 0, 255).astype(np.uint8), mode='L')


def load_rgb_image(image: Any):
    """Load anything imgutils' ``ImageTyping`` accepts as one decoded RGB image.

    Transparent images are put on white, as in imgutils
    (``load_image(..., mode='RGB', force_background='white')``). 16-bit and 32-bit grey
    images are scaled to 8 bits first.

    :raises ImageLoadError: When the input cannot be read as an image; the message names it.
    """
    from imgutils.data import load_image
    try:
        # imgutils hands bytes to Image.open, which takes them for a file name.
        source = io.BytesIO(image) if isinstance(image, (bytes, bytearray)) else image
        pil_image = load_image(source, mode=None, force_background='white')
        if pil_image.mode in ('I', 'I;16', 'I;16B', 'I;16L', 'I;16N'):
            pil_image = _to_8bit(pil_image)
        pil_image = load_image(pil_image, mode='RGB', force_background='white')
        pil_image.load()
    except ImageLoadError:
        raise
    except Exception as err:
        raise ImageLoadError(
            f'Cannot read image {describe_image_input(image)}: {type(err).__name__}: {err}. '
            f'Pass a path, bytes, a file object or a PIL image of a format Pillow can open.'
        ) from err
    return pil_image


def create_stage_transform(stages: Sequence[dict], where: str) -> Callable:
    """Build the pillow transform for a repository's ``stages`` list.

    :param stages: The ``stages`` of ``preprocessor_config.json``, in imgutils' format.
    :param where: The model, for error messages.
    :raises ModelNotAvailableError: When the stages are missing or imgutils cannot build them.
    """
    if not isinstance(stages, list) or not stages:
        raise ModelNotAvailableError(
            f'{where}: preprocessor_config.json has no "stages" list, so the preprocessing '
            f'the model was trained with is unknown. Use a repository in the published layout.'
        )
    try:
        transform = pillow_transforms().create_pillow_transforms(list(stages))
    except Exception as err:
        raise ModelNotAvailableError(
            f'{where}: imgutils cannot build the preprocessing stages {stages!r}: {err}. '
            f'Upgrade dghs-imgutils, or fix preprocessor_config.json.'
        ) from err
    return _as_torchvision_does(transform)


def _torchvision_center_crop_class():
    module = pillow_transforms()

    class TorchvisionCenterCrop(module.PillowCenterCrop):
        """imgutils' pillow centre crop, with torchvision's offsets.

        imgutils' pillow crop rounds an odd offset down; torchvision, which the published
        image processor (and so training) uses, rounds it half to even. For an image whose
        resized width is, say, 711 for a 384 crop, the two differ by one pixel.
        """

        def _center_crop(self, img):
            from PIL import Image
            crop_height, crop_width = self.size
            width, height = img.size
            if width < crop_width or height < crop_height:
                pad_width, pad_height = max(crop_width - width, 0), max(crop_height - height, 0)
                padded = Image.new(img.mode, (width + pad_width, height + pad_height), 0)
                padded.paste(img, (pad_width // 2, pad_height // 2))
                img, (width, height) = padded, padded.size
            left = int(round((width - crop_width) / 2.0))
            top = int(round((height - crop_height) / 2.0))
            return img.crop((left, top, left + crop_width, top + crop_height))

    return TorchvisionCenterCrop


def _as_torchvision_does(transform):
    """The same pillow transform, with the centre crop placed the way torchvision places it."""
    module = pillow_transforms()
    if isinstance(transform, module.PillowCompose):
        transform.transforms = [_as_torchvision_does(item) for item in transform.transforms]
        return transform
    if type(transform) is module.PillowCenterCrop:
        return _torchvision_center_crop_class()(size=list(transform.size))
    return transform


def images_to_batch(images: List[Any], transform: Callable):
    """Apply ``transform`` to each PIL image and stack the results as float32 ``[n, C, H, W]``."""
    import numpy as np
    arrays = [np.asarray(transform(image), dtype=np.float32) for image in images]
    return np.stack(arrays).astype(np.float32, copy=False)
