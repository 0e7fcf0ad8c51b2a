"""The package where POSIX-only functions do not exist (Windows), hard links that a file system lacks, and saved
paths that move between Windows and POSIX machines."""
import errno
import json
import os
import subprocess
import sys

import pytest

from imgutils_facequal import place_file
from imgutils_facequal.store import local_path, read_scores, stored_path
from tests.support.fake_hub import CLASS_COLOURS, draw_scene

# What Windows lacks, taken away before this package or filelock is imported. The standard library guards its
# fork hooks with hasattr(os, 'fork'); bitmath (under imgutils) imports fcntl only when os.name is 'posix', so it is
# imported first, as on Windows it would not ask for fcntl at all.
WITHOUT_POSIX = """
import os, sys
import bitmath
del os.register_at_fork, os.fork
sys.modules['fcntl'] = None
"""


def python(code: str, cwd=None) -> subprocess.CompletedProcess:
    # a fresh interpreter is the point: what is imported at start-up must not need the functions taken away
    return subprocess.run([sys.executable, '-c', WITHOUT_POSIX + code], capture_output=True, text=True, timeout=300,
                          cwd=cwd, stdin=subprocess.DEVNULL)


def test_import_and_score_to_a_file_without_fork_hooks_or_fcntl(tmp_path):
    frames = tmp_path / 'frames'
    frames.mkdir()
    for index in range(2):
        draw_scene((256, 256), heads=[(index, 0, CLASS_COLOURS['good'])])[0].save(frames / f'{index}.png')
    output = tmp_path / 'scores.jsonl'
    result = python(f"""
import imgutils_facequal, imgutils_facequal.pipeline, imgutils_facequal.backends
assert 'fcntl' not in [name for name, module in sys.modules.items() if module is not None]
from imgutils_facequal.cli import main
sys.argv = ['imgutils-facequal', 'score', {str(frames)!r}, '-o', {str(output)!r}]
main()
""")
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'Done: 2 images' in result.stderr and 'failed: 0' in result.stderr
    again = python(f"""
from imgutils_facequal.cli import main
sys.argv = ['imgutils-facequal', 'score', {str(frames)!r}, '-o', {str(output)!r}]
main()
""")
    assert again.returncode == 0 and '2 images skipped' in again.stderr, again.stderr[-3000:]
    assert len(read_scores(str(output)).rows) == 2


def test_hardlink_without_hard_links_says_to_copy(tmp_path, monkeypatch):
    source = tmp_path / 'a.png'
    source.write_bytes(b'image')

    def no_links(*_):
        raise OSError(errno.EPERM, 'Operation not permitted')

    monkeypatch.setattr(os, 'link', no_links)
    with pytest.raises(OSError, match=r'hard links need one filesystem; use --mode copy'):
        place_file(str(source), str(tmp_path / 'out' / 'a.png'), 'hardlink')
    assert place_file(str(source), str(tmp_path / 'out' / 'a.png'), 'copy') == 'placed'  # copies need no link
    monkeypatch.delattr(os, 'link')
    assert place_file(str(source), str(tmp_path / 'out' / 'b.png'), 'move') == 'placed'
    assert not source.exists() and (tmp_path / 'out' / 'b.png').read_bytes() == b'image'


def test_saved_paths_use_forward_slashes_on_every_system(tmp_path):
    assert stored_path('frames\\ep1\\0001.png', sep='\\') == 'frames/ep1/0001.png'
    assert local_path('frames/ep1/0001.png', sep='\\') == 'frames\\ep1\\0001.png'
    assert stored_path('frames/ep1/0001.png', sep='/') == 'frames/ep1/0001.png'
    # scores written on Windows (relative paths, '/' between folders) read here as this system's paths
    (tmp_path / 'frames' / 'ep1').mkdir(parents=True)
    scores = tmp_path / 'scores.jsonl'
    scores.write_text(json.dumps({'image': 'frames/ep1/0001.png', 'face': None, 'faces': 0, 'width': 8,
                                  'height': 8, 'error': None}) + '\n')
    saved = read_scores(str(scores))
    assert [row['image'] for row in saved.rows] == ['frames/ep1/0001.png']
    from imgutils_facequal import scored_images
    assert scored_images(saved.rows)[0].image.path == os.path.join('frames', 'ep1', '0001.png')
