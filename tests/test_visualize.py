"""Drawings of scored faces: labels sized to the picture and kept off small faces, JPEG and WebP with a
maximum side, files that follow the umask."""
import os

import numpy as np
import pytest
from PIL import Image

from imgutils_facequal import save_face_quality_visualization, visualize_face_quality
from imgutils_facequal.visualize import QUALITY_COLOURS
from tests.support.cli import run, write_scenes

GOOD = tuple(int(QUALITY_COLOURS['good'][index:index + 2], 16) for index in (1, 3, 5))


def _photo(width, height, seed=0):
    """A photo-like frame: smooth colour waves under sensor-like noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    waves = np.stack([128 + 90 * np.sin(x / (width / 9) + c) * np.cos(y / (height / 8) - c) for c in (0, 1, 2)], -1)
    return Image.fromarray(np.clip(waves + rng.normal(0, 12, waves.shape), 0, 255).astype(np.uint8))


def _label_rows(drawing, box):
    """The rows above ``box`` that hold the label's fill (the good class's colour)."""
    pixels = np.asarray(drawing.convert('RGB'))[:, box[0]:box[2]]
    return np.flatnonzero((pixels == GOOD).all(axis=-1).sum(axis=1) > (box[2] - box[0]) // 4)


@pytest.mark.parametrize('size', [(256, 256), (1200, 800), (6000, 4000)])
def test_the_label_is_sized_to_the_picture(size):
    width, height = size
    box = (width * 4 // 10, height * 4 // 10, width * 6 // 10, height * 7 // 10)
    drawing = visualize_face_quality(Image.new('RGB', size), [(box, 'good', 0.91)])
    rows = _label_rows(drawing, box)
    label = rows[rows < box[1]]
    label_height = label.max() - label.min() + 1
    assert label.max() == box[1] - 1  # right above the face
    # imgutils' fixed 12-point label is 0.5 % of a 4000-pixel side: unreadable once the frame is seen whole
    assert 0.03 * min(size) <= label_height <= 0.07 * min(size), label_height


def test_the_boxes_line_grows_with_the_picture():
    thin = visualize_face_quality(Image.new('RGB', (256, 256)), [((50, 50, 150, 150), 'good', 0.9)], no_label=True)
    thick = visualize_face_quality(Image.new('RGB', (6000, 4000)), [((1000, 1000, 3000, 3000), 'good', 0.9)],
                                   no_label=True)
    assert (np.asarray(thin)[100, 40:80] == GOOD).all(axis=-1).sum() == 2
    assert (np.asarray(thick)[2000, 900:1100] == GOOD).all(axis=-1).sum() == 10


@pytest.mark.parametrize('box', [(20, 20, 36, 36), (24, 4, 40, 20), (20, 0, 36, 16), (0, 48, 16, 64)])
def test_the_label_never_covers_a_small_face(box):
    """Above the box where there is room, below it at the top edge; the face inside stays as it was."""
    frame = Image.new('RGB', (64, 64), (255, 255, 255))
    drawing = np.asarray(visualize_face_quality(frame, [(box, 'good', 0.91)], line_width=1))
    x0, y0, x1, y1 = box
    assert (drawing[y0 + 1:y1, x0 + 1:x1] == 255).all()
    assert (drawing == GOOD).all(axis=-1).sum() > 4 * (x1 - x0)  # the label is drawn, outside the box


def test_max_side_scales_the_drawing_and_its_boxes():
    drawing = visualize_face_quality(Image.new('RGB', (4000, 2000)), [((1000, 500, 2000, 1500), 'good', 0.9)],
                                     max_side=1000, no_label=True)
    assert drawing.size == (1000, 500)
    assert (np.asarray(drawing)[250, 240:260] == GOOD).all(axis=-1).any()


def test_jpeg_and_webp_are_a_fraction_of_the_png(tmp_path):
    frame = _photo(1500, 1000)
    faces = [((600, 300, 900, 700), 'good', 0.91), ((100, 100, 160, 170), 'poor', 0.7)]
    sizes = {}
    for name in ('x.png', 'x.jpg', 'x.webp'):
        path = save_face_quality_visualization(frame, faces, str(tmp_path / name))
        assert Image.open(path).format == {'png': 'PNG', 'jpg': 'JPEG', 'webp': 'WEBP'}[name[2:]]
        sizes[name] = os.path.getsize(path)
    assert sizes['x.jpg'] < sizes['x.png'] / 3 and sizes['x.webp'] < sizes['x.png'] / 3, sizes
    small = save_face_quality_visualization(frame, faces, str(tmp_path / 'small'), format='jpeg', max_side=600)
    assert Image.open(small).size == (600, 400) and os.path.getsize(small) < sizes['x.jpg'] / 3
    with pytest.raises(ValueError, match='x.gif'):
        save_face_quality_visualization(frame, faces, str(tmp_path / 'x.gif'))
    assert sorted(os.listdir(tmp_path)) == ['small', 'x.jpg', 'x.png', 'x.webp']  # nothing half-written


@pytest.mark.skipif(os.name == 'nt', reason='POSIX permission bits')
def test_drawings_follow_the_umask(tmp_path):
    root = write_scenes(tmp_path / 'frames', 1)
    old = os.umask(0o027)
    try:
        path = save_face_quality_visualization(Image.new('RGB', (64, 64)), [((8, 8, 40, 40), 'ok', 0.6)],
                                               str(tmp_path / 'api.webp'))
        run('score', root, '--visualize', tmp_path / 'boxes', '--visualize-format', 'jpeg', '-q', check_code=0)
    finally:
        os.umask(old)
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert os.stat(tmp_path / 'boxes' / '0.jpg').st_mode & 0o777 == 0o640


def test_score_visualize_format_and_max_side(tmp_path):
    root = write_scenes(tmp_path / 'frames', 2)
    out = tmp_path / 'boxes'
    run('score', root, '--visualize', out, '--visualize-format', 'webp', '--visualize-max-side', 128, '-q',
        check_code=0)
    assert sorted(path.name for path in out.iterdir()) == ['0.webp', '1.webp']
    assert Image.open(out / '0.webp').format == 'WEBP' and Image.open(out / '0.webp').size == (128, 128)
    again = run('score', root, '--visualize', out, '--visualize-format', 'webp', '--visualize-max-side', 128,
                check_code=0)
    assert 'not drawing' not in again.stderr  # the same drawings again: nothing to say
    run('score', root, '--visualize', out, '--visualize-format', 'gif', check_code=2)
