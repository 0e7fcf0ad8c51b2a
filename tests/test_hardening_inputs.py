"""Hardening, inputs: names, files, pixels and spellings the commands must take, and usage problems found
before any model loads.

Each test names the item of the hardening issue it covers; each failed before its fix.
"""
import os

import numpy as np
import pytest
from PIL import Image

from imgutils_facequal import InputImage, find_images, load_face_quality_detector, score_images_with
from imgutils_facequal.errors import InputNotFoundError
from imgutils_facequal.images import load_rgb_image
from tests.support.cli import rows_by_image, run, run_process, scene, write_scenes
from tests.support.fake_hub import CLASS_COLOURS, solid_image


@pytest.fixture
def frames(tmp_path):
    """Three scenes of two or three faces each."""
    return write_scenes(tmp_path / 'frames', 3)


# 1. a file name that is not valid UTF-8
@pytest.mark.parametrize('fmt', ['jsonl', 'csv'])
def test_a_name_that_is_not_utf8_is_written_and_resumed(frames, tmp_path, fmt):
    name = os.fsdecode(b'b\xff.png')
    scene(5)[0].save(os.path.join(frames, name))
    output = tmp_path / f'scores.{fmt}'
    run('score', frames, '-o', output, check_code=0)
    data = output.read_bytes()
    if fmt == 'jsonl':
        data.decode('utf-8')  # still valid UTF-8: the byte is kept as an escape
        assert os.path.join(str(frames), name) in rows_by_image(output)
    else:
        assert os.fsencode(os.path.join(str(frames), name)) in data  # the bytes themselves
    again = run('score', frames, '-o', output, check_code=0)
    assert 'Done: 0 images' in again.stderr and '4 images skipped' in again.stderr
    assert output.read_bytes() == data


# 17. line breaks in names
@pytest.mark.parametrize('fmt', ['jsonl', 'csv'])
def test_names_with_line_breaks_resume(tmp_path, fmt):
    root = tmp_path / 'odd names'
    root.mkdir()
    for index, odd in enumerate(['a\nb', 'c\u2028d', 'e\u0085f', 'g\x1ch', 'i\rj']):
        scene(index)[0].save(root / f'{odd}.png')
    output = tmp_path / f'scores.{fmt}'
    run('score', root, '-o', output, check_code=0)
    data = output.read_bytes()
    again = run('score', root, '-o', output, check_code=0)
    assert '5 images skipped' in again.stderr and output.read_bytes() == data
    if fmt == 'csv':
        import csv
        with open(output, newline='', encoding='utf-8') as file:
            assert len({row['image'] for row in csv.DictReader(file)}) == 5


# 3. a FIFO in the input folder (in a process of its own: a run that opened it would hang)
def test_a_fifo_gets_an_error_row_and_the_run_ends(frames, tmp_path):
    os.mkfifo(frames / 'pipe.png')
    output = tmp_path / 'scores.jsonl'
    result = run_process('score', frames, '-o', output, check_code=1, timeout=120)
    rows = rows_by_image(output)
    assert 'not a regular file' in rows[str(frames / 'pipe.png')][0]['error']
    assert len(rows) == 4 and 'failed: 1' in result.stderr


# 7. EXIF orientation
@pytest.mark.parametrize('orientation', [6, 8])
def test_exif_orientation_is_applied(tmp_path, orientation):
    stored = Image.new('RGB', (256, 128), (20, 20, 230))
    stored.paste((230, 20, 20), (0, 0, 64, 128))  # red on the stored left
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / 'rotated.jpg'
    stored.save(path, exif=exif.tobytes(), quality=95)
    shown = load_rgb_image(str(path))
    assert shown.size == (128, 256)
    red_at_top = shown.getpixel((64, 10))[0] > 200
    assert red_at_top == (orientation == 6)  # 6 turns the stored left to the top, 8 to the bottom


# 9. 16-bit and float images by their mode's range
def test_sixteen_bit_and_float_images_keep_their_brightness():
    dark = Image.new('I;16', (8, 8), 200)  # 200 of 65535: nearly black
    assert dark.mode == 'I;16' and load_rgb_image(dark).getpixel((0, 0)) == (1, 1, 1)
    bright = Image.new('I;16', (8, 8), 65535)
    assert load_rgb_image(bright).getpixel((0, 0)) == (255, 255, 255)
    grey = Image.fromarray(np.full((8, 8), 0.5, np.float32))  # float images are in [0, 1]
    assert grey.mode == 'F' and load_rgb_image(grey).getpixel((0, 0)) == (128, 128, 128)


# 14. the same image spelled differently is scored once
def test_the_same_image_spelled_differently_is_one_image(frames, tmp_path):
    os.symlink('..', frames / 'up')
    spellings = [str(frames), str(frames) + '/', os.path.relpath(frames), str(frames / 'up' / 'frames' / '0.png'),
                 str(frames) + '/**/*.png']
    images = find_images(spellings)
    assert sorted(os.path.realpath(image.path) for image in images) == sorted(
        str(frames / f'{index}.png') for index in range(3))


# 28. small things: a file named like a URL, bytes without a path
def test_a_local_file_named_like_a_url_is_read_as_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    solid_image(CLASS_COLOURS['good']).save('http:face.png', format='PNG')
    assert load_rgb_image('http:face.png').size == (48, 40)


def test_bytes_name_the_row_id():
    faces = load_face_quality_detector()
    result, = score_images_with(faces, [InputImage('row-17', data=b'not an image')])
    assert result.error.startswith('row-17: ')


# 25. usage problems found before any model loads
def test_usage_problems_are_found_first(frames, tmp_path):
    output = tmp_path / 'scores.jsonl'
    typo = run('score', str(frames) + '-typo', '-o', output, check_code=2)
    assert 'No such file, folder or matching glob' in typo.stderr and not output.exists()
    assert 'matching glob' in run('score', str(frames / '*.jpeg'), check_code=2).stderr
    (tmp_path / 'empty').mkdir()
    empty = run('score', tmp_path / 'empty', check_code=0)
    assert 'no images found' in empty.stderr
    nose = run('score', frames, '-o', output, '--detector', 'nose', check_code=2)
    assert "Unknown detector 'nose'" in nose.stderr and (not output.exists() or output.read_text() == '')
    with pytest.raises(InputNotFoundError):
        find_images([str(frames / 'nothing-here.png')])
