"""Image loading and the model's own preprocessing.

Preprocessing is never hard-coded: it is the ``stages`` list of the repository's
``preprocessor_config.json``, built with imgutils' pillow transforms (which need no torch).
"""
import io
import os
import stat
from typing import Any, Callable, List, Optional, Sequence

from ._imgutils import pillow_transforms
from .errors import ImageLoadError, ModelNotAvailableError

__all__ = [
    'load_rgb_image',
    'check_regular_file',
    'describe_image_input',
    'check_stages',
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
    if hasattr(image, 'shape') and hasattr(image, 'dtype'):
        return f'<{type(image).__name__} shape={tuple(image.shape)} dtype={image.dtype}>'
    text = repr(image)
    return text if len(text) <= 80 else f'<{type(image).__name__}>'


def check_regular_file(path: Any) -> bool:
    """Refuse a path that exists but is not a regular file (a folder, a named pipe, a device, a socket)
    before anything opens it: opening a named pipe waits for a writer that may never come.

    A path that does not exist passes (opening it reports that); so does a symbolic link to a regular file.
    Returns whether the path is a regular file (``os.path.isfile``, from the same ``stat``).

    >>> import tempfile
    >>> check_regular_file(tempfile.gettempdir())
    Traceback (most recent call last):
    ...
    imgutils_facequal.errors.ImageLoadError: Cannot read image '...': it is not a regular file (a folder). ...

    :raises ImageLoadError: Naming the path and what it is.
    """
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):  # missing, or a name the system refuses: opening it says which
        return False
    if not stat.S_ISREG(mode):
        raise ImageLoadError(f'Cannot read image {describe_image_input(path)}: it is not a regular file '
                             f'({_file_kind(mode)}). Pass image files.')
    return True


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, 'a folder'), (stat.S_ISFIFO, 'a named pipe'), (stat.S_ISCHR, 'a character device'),
             (stat.S_ISBLK, 'a block device'), (stat.S_ISSOCK, 'a socket'))
    return next((name for test, name in kinds if test(mode)), 'not a file')


_SIXTEEN_BIT_MODES = ('I;16', 'I;16B', 'I;16L', 'I;16N')


def _to_8bit(image):
    """Grey images of more than 8 bits, scaled to 8 bits by their mode's range, so they neither clip to
    white nor turn black: 16-bit modes from 0..65535, float images from [0, 1]. A 32-bit integer
    (``I``) or float image whose values cannot be of that range is taken as 0..65535 or 0..255 data."""
    import numpy as np
    from PIL import Image

    array = np.asarray(image, dtype=np.float64)
    high = float(np.nanmax(array)) if array.size else 0.0
    if image.mode in _SIXTEEN_BIT_MODES:
        scale = 255.0 / 65535.0
    elif image.mode == 'F':
        scale = 255.0 if high <= 1.0 else 1.0
    else:
        scale = 255.0 / 65535.0 if high > 255 else 1.0
    return Image.fromarray(np.clip(np.round(np.nan_to_num(array) * scale), 0, 255).astype(np.uint8), mode='L')


def _open(image: Any):
    """A PIL image of any ``ImageTyping`` input; an existing file is opened as a file even when its
    name looks like a URL (``http:face.png``)."""
    from imgutils.data import load_image
    from PIL import Image
    if isinstance(image, (bytes, bytearray)):  # imgutils hands bytes to Image.open, which takes them for a name
        return Image.open(io.BytesIO(image))
    if isinstance(image, (str, os.PathLike)):
        if check_regular_file(image):
            return Image.open(image)
    elif not (isinstance(image, Image.Image) or hasattr(image, 'read')):
        # imgutils' message would print the whole object (a numpy array) a second time
        raise ImageLoadError(f'Cannot read image {describe_image_input(image)}: not an image input. Pass a path, '
                             f'bytes, a file object or a PIL image (a numpy array: PIL.Image.fromarray(array)).')
    return load_image(image, mode=None, force_background=None)


def _upright(image):
    """The image as a viewer shows it: its EXIF orientation applied."""
    from PIL import ImageOps
    try:
        orientation = image.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - unreadable EXIF: nothing to apply
        return image
    return ImageOps.exif_transpose(image) if orientation not in (None, 1) else image


def load_rgb_image(image: Any):
    """Load anything imgutils' ``ImageTyping`` accepts as one decoded RGB image.

    Transparent images are put on white, as in imgutils
    (``load_image(..., mode='RGB', force_background='white')``). The EXIF orientation is
    applied, as image viewers apply it, so sizes and boxes are in the frame a viewer shows.
    16-bit, 32-bit and float grey images are scaled to 8 bits by their mode's range first.

    :raises ImageLoadError: When the input cannot be read as an image; the message names it.
    """
    from imgutils.data import load_image
    try:
        pil_image = _upright(_open(image))
        pil_image = load_image(pil_image, mode=None, force_background='white')
        if pil_image.mode in ('I', 'F') + _SIXTEEN_BIT_MODES:
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


#: The largest side a ``resize`` stage may ask for without a known model input size.
MAX_STAGE_SIZE = 4096
_TO_TENSOR = ('to_tensor', 'maybe_to_tensor')


def _sizes(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def check_stages(stages: Sequence[dict], where: str, input_size: Optional[Sequence[int]] = None) -> None:
    """Refuse preprocessing stages that cannot give the model its input.

    Sizes must be positive whole numbers, a resize at most 4 times the model's input side
    (:data:`MAX_STAGE_SIZE` when the input size is not fixed), a centre crop the model's input
    size when it is fixed; a to-tensor stage must be there, and no ``normalize`` std may be 0.

    :param input_size: The model's ``(height, width)``, when its graph fixes it.
    :raises ModelNotAvailableError: Naming the model and the stage.
    """
    def refuse(stage, reason):
        raise ModelNotAvailableError(
            f'{where}: preprocessor_config.json stage {stage!r} {reason}, so images cannot be prepared for the '
            f'model. Fix the repository\'s preprocessor_config.json (or use another revision).')

    if not isinstance(stages, list) or not stages:
        raise ModelNotAvailableError(
            f'{where}: preprocessor_config.json has no "stages" list, so the preprocessing '
            f'the model was trained with is unknown. Use a repository in the published layout.'
        )
    largest = 4 * max(input_size) if input_size else MAX_STAGE_SIZE
    for stage in stages:
        if not isinstance(stage, dict) or not isinstance(stage.get('type'), str):
            refuse(stage, 'is not an object with a "type"')
        kind = stage['type']
        if kind in ('resize', 'center_crop'):
            sizes = _sizes(stage.get('size'))
            if not sizes or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in sizes):
                refuse(stage, 'has a size that is not a positive whole number')
            if kind == 'resize' and max(sizes) > largest:
                refuse(stage, f'resizes to {max(sizes)}, more than {largest}'
                              + (f' (4 times the model input {tuple(input_size)})' if input_size else ''))
            if kind == 'center_crop' and input_size and tuple(sizes * (2 // len(sizes))) != tuple(input_size):
                refuse(stage, f'crops to {sizes}, but the model takes {tuple(input_size)}')
        if kind == 'normalize' and any(not isinstance(v, (int, float)) or v == 0 for v in _sizes(stage.get('std'))):
            refuse(stage, 'divides by a std of 0 (or not a number)')
    if not any(stage['type'] in _TO_TENSOR for stage in stages):
        refuse([stage['type'] for stage in stages], 'has no to_tensor stage')


def create_stage_transform(stages: Sequence[dict], where: str) -> Callable:
    """Build the pillow transform for a repository's ``stages`` list, after :func:`check_stages`.

    :param stages: The ``stages`` of ``preprocessor_config.json``, in imgutils' format.
    :param where: The model, for error messages.
    :raises ModelNotAvailableError: When the stages are missing, wrong, or imgutils cannot build them.
    """
    check_stages(stages, where)
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
