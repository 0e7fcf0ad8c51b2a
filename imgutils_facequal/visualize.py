"""Scored faces drawn on their image: boxes and labels sized to the picture, saved as PNG, JPEG or WebP.

The label of a face (its class and that class's probability) sits outside the box, above it
where there is room and below it otherwise, so it never hides a small face; the font and the
line width grow with the picture, so a label reads the same on a 256-pixel thumbnail and on a
6000 x 4000 frame seen whole. Each quality class keeps its colour from one picture to the
next; the labels of other models get imgutils' colours.

Example:

    >>> from imgutils_facequal import visualize_face_quality
    >>> from PIL import Image
    >>> frame = Image.new('RGB', (640, 360), 'white')
    >>> visualize_face_quality(frame, [((100, 80, 180, 170), 'good', 0.912)], max_side=320).size
    (320, 180)
"""
import math
import os
from typing import Dict, Optional, Sequence, Tuple

from .atomic import replace_file
from .images import load_rgb_image
from .scoring import FaceQualityResult

__all__ = ['visualize_face_quality', 'save_face_quality_visualization', 'VISUALIZATION_FORMATS',
           'visualization_suffix', 'write_visualization']

#: The formats a drawing is saved in: Pillow's name, the file suffix and the encoder options.
#: JPEG at quality 90 and WebP at quality 85 keep the labels sharp at a tenth of a PNG's size or less.
VISUALIZATION_FORMATS: Dict[str, Tuple[str, str, dict]] = {
    'png': ('PNG', '.png', {}),
    'jpeg': ('JPEG', '.jpg', {'quality': 90}),
    'webp': ('WEBP', '.webp', {'quality': 85, 'method': 4}),
}
_SUFFIX_FORMATS = {'.png': 'png', '.jpg': 'jpeg', '.jpeg': 'jpeg', '.webp': 'webp'}
#: WebP holds at most this many pixels a side; larger drawings are scaled down to it.
WEBP_MAX_SIDE = 16383
#: The quality classes' colours: red to blue, poor to excellent.
QUALITY_COLOURS = {'poor': '#e53935', 'ok': '#fb8c00', 'good': '#43a047', 'excellent': '#1e88e5'}


def label_sizes(image_size: Tuple[int, int]) -> Tuple[int, int, int]:
    """``(fontsize, line_width, padding)`` in pixels for a drawing of ``image_size``: about 2.5 % of its
    short side for the text (10 pixels at least), a quarter of a percent for the lines (2 at least).

    Example:

        >>> from imgutils_facequal.visualize import label_sizes
        >>> label_sizes((256, 256)), label_sizes((6000, 4000))
        ((10, 2, 3), (100, 10, 25))
    """
    short = min(image_size)
    fontsize = max(10, round(short * 0.025))
    return fontsize, max(2, round(short / 400)), max(3, fontsize // 4)


def _colours(labels: Sequence[str]) -> Dict[str, str]:
    others = sorted(set(labels) - set(QUALITY_COLOURS))
    if not others:
        return dict(QUALITY_COLOURS)
    from hbutils.color import rnd_colors  # imgutils' own colours, as detection_visualize picks them
    return {**QUALITY_COLOURS, **dict(zip(others, map(str, rnd_colors(len(others)))))}


def _font(size: int):
    from PIL import ImageFont
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ValueError, OSError, ImportError):  # Pillow without FreeType: its fixed bitmap font
        return ImageFont.load_default()


def _text_colour(background: str) -> str:
    red, green, blue = (int(background[index:index + 2], 16) for index in (1, 3, 5))
    return 'black' if 0.299 * red + 0.587 * green + 0.114 * blue > 140 else 'white'


def _label_box(box, text_size, padding, image_size):
    """Where a label goes: above the box if it fits, else below it, else inside its top; kept inside the picture."""
    x0, y0, x1, y1 = box
    width, height = text_size[0] + 2 * padding, text_size[1] + 2 * padding
    if y0 - height >= 0:
        top = y0 - height
    elif y1 + height <= image_size[1]:
        top = y1
    else:
        top = y0
    left = max(0, min(x0, image_size[0] - width))
    return left, top, left + width, top + height


def visualize_face_quality(image, results: Sequence, labels: Optional[Sequence[str]] = None,
                           max_side: Optional[int] = None, fontsize: Optional[int] = None,
                           line_width: Optional[int] = None, text_padding: Optional[int] = None,
                           no_label: bool = False, max_short_edge_size: Optional[int] = None):
    """Draw scored faces, each boxed and labelled with its class and that class's probability.

    :param image: Anything imgutils' ``ImageTyping`` accepts.
    :param results: `imgutils_facequal.FaceQualityResult` objects, or plain imgutils
        ``(bbox, label, score)`` triples.
    :param labels: Every class, for the colours; default the results' classes.
    :param max_side: Scale the drawing down so that its long side is at most this many pixels
        (default: the image's size). The boxes are scaled with it.
    :param fontsize: The label's font size in pixels; default 2.5 % of the drawing's short side.
    :param line_width: The boxes' line width; default a quarter of a percent of the short side.
    :param text_padding: Room around the label's text; default a quarter of the font size.
    :param no_label: Draw the boxes only.
    :param max_short_edge_size: As in imgutils' ``detection_visualize``: scale the drawing
        down so that its short side is at most this.
    :return: The drawing, an RGB ``PIL.Image.Image``.

    Example:

        >>> from imgutils_facequal import detect_face_quality, visualize_face_quality
        >>> image = 'frame.png'
        >>> faces = detect_face_quality(image)  # doctest: +SKIP
        >>> visualize_face_quality(image, faces, max_side=2048).save('boxed.jpg')  # doctest: +SKIP
    """
    from PIL import Image, ImageDraw
    detections = [result.as_detection() if isinstance(result, FaceQualityResult) else tuple(result[:3])
                  for result in results]
    if labels is None and results and isinstance(results[0], FaceQualityResult):
        labels = list(results[0].scores)
    drawing = load_rgb_image(image).copy()
    width, height = drawing.size
    scale = 1.0
    if max_side is not None and max(width, height) > max_side:
        scale = max_side / max(width, height)
    if max_short_edge_size is not None and min(width, height) * scale > max_short_edge_size:
        scale = max_short_edge_size / min(width, height)
    if scale < 1.0:
        drawing = drawing.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.LANCZOS)
    auto_font, auto_line, _ = label_sizes(drawing.size)
    fontsize, line_width = fontsize or auto_font, line_width or auto_line
    padding = text_padding if text_padding is not None else max(3, fontsize // 4)  # label_sizes' rule
    font = _font(fontsize)
    colours = _colours(list(labels or ()) + [label for _, label, _ in detections])
    draw = ImageDraw.Draw(drawing)
    # the best faces last, so their labels are on top where two meet (as imgutils draws)
    for (x0, y0, x1, y1), label, score in sorted(detections, key=lambda item: item[2]):
        box = tuple(int(math.floor(value * scale)) for value in (x0, y0, x1, y1))
        colour = colours[label]
        draw.rectangle(box, outline=colour, width=line_width)
        if no_label:
            continue
        text = f'{label}: {score * 100:.1f}%'
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        place = _label_box(box, (right - left, bottom - top), padding, drawing.size)
        draw.rectangle(place, fill=colour)
        draw.text((place[0] + padding - left, place[1] + padding - top), text, fill=_text_colour(colour), font=font)
    return drawing


def visualization_suffix(fmt: str) -> str:
    """The file suffix of a drawing saved as ``fmt`` (``png``, ``jpeg`` or ``webp``): ``.png``, ``.jpg``, ``.webp``."""
    return VISUALIZATION_FORMATS[fmt][1]


def write_visualization(drawing, path: str, fmt: str = 'png', quality: Optional[int] = None) -> None:
    """Write a drawing to ``path`` (a path Pillow writes to) in ``fmt``; ``quality`` for JPEG and WebP."""
    pillow_name, _, options = VISUALIZATION_FORMATS[fmt]
    options = dict(options)
    if quality is not None and fmt != 'png':
        options['quality'] = quality
    if fmt == 'webp' and max(drawing.size) > WEBP_MAX_SIDE:
        drawing = drawing.copy()
        drawing.thumbnail((WEBP_MAX_SIDE, WEBP_MAX_SIDE))
    drawing.save(path, format=pillow_name, **options)


def save_face_quality_visualization(image, results: Sequence, path: str, format: Optional[str] = None,
                                    max_side: Optional[int] = None, quality: Optional[int] = None,
                                    **options) -> str:
    """Draw scored faces (see `visualize_face_quality`) and save the drawing, whole or not at all.

    :param path: Where to save; an existing file is replaced. The file gets the usual
        permissions (those of the user's umask).
    :param format: ``png``, ``jpeg`` or ``webp``; default from ``path``'s suffix. PNG is
        lossless and large; JPEG (quality 90) and WebP (quality 85) are for sharing.
    :param max_side: The drawing's longest side at most, in pixels (WebP: 16383 at most).
    :param quality: JPEG or WebP quality, 1 to 100.
    :param options: More options of `visualize_face_quality`.
    :return: ``path``.
    :raises ValueError: When the format is not one of those, or cannot be told from ``path``.

    Example:

        >>> from imgutils_facequal import detect_face_quality, save_face_quality_visualization
        >>> faces = detect_face_quality('frame.jpg')  # doctest: +SKIP
        >>> save_face_quality_visualization('frame.jpg', faces, 'frame-faces.jpg', max_side=2048)  # doctest: +SKIP
        'frame-faces.jpg'
    """
    path = os.fspath(path)
    fmt = format or _SUFFIX_FORMATS.get(os.path.splitext(path)[1].lower())
    if fmt not in VISUALIZATION_FORMATS:
        raise ValueError(f'Cannot save a drawing as {path!r}: give format= one of {", ".join(VISUALIZATION_FORMATS)}'
                         f' (or a path ending in {", ".join(_SUFFIX_FORMATS)}); got format={format!r}.')
    drawing = visualize_face_quality(image, results, max_side=max_side, **options)
    replace_file(path, lambda temp: write_visualization(drawing, temp, fmt, quality))
    return path

