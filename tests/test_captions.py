"""The files trainers read beside a kept image: captions with a quality tag, waifuc's meta file, and the
sidecars (gallery-dl's ``x.jpg.json``, kohya's latent caches) that travel with it.

Each test scores a few scenes once (``score -o``) and runs ``filter --scores`` on them in process.
"""
import json
import os
import re
import shlex

import pytest

from imgutils_facequal import find_sidecars
from imgutils_facequal.curate.captions import TrainingFiles, caption_tag, captioned
from imgutils_facequal.store import read_scores, scored_images
from tests.support.cli import run, scene
from tests.test_docs import ROOT, example_folder, python_blocks  # noqa: F401 - the docs' example folder fixture

@pytest.fixture
def frames(tmp_path):
    """Three scenes: one with a caption, one with a waifuc meta file and gallery-dl metadata, one with nothing;
    their scores; the tag each should get."""
    root = tmp_path / 'frames'
    root.mkdir()
    for index in range(3):
        scene(index)[0].save(root / f'f{index}.png')
    (root / 'f0.txt').write_text('1girl, solo\n')
    (root / '.f1_meta.json').write_text(json.dumps({'tags': {'1girl': 0.98}, 'url': 'https://example.org/1'}))
    (root / 'f1.png.json').write_text('{"id": 1}')
    (root / 'f1_1024x0768_sdxl.npz').write_bytes(b'latents')
    (root / 'f1.npz').write_bytes(b'old latents')
    scores = tmp_path / 'scores.jsonl'
    run('score', root, '-o', scores, '--crop', 'face', '--margin', '0', '-q', check_code=0)
    tags = {os.path.basename(result.image.path): caption_tag(result.faces)
            for result in scored_images(read_scores(str(scores)).rows)}
    return root, scores, tags


def _rounded(value):
    """JSON with its floats to 5 places (the page's figures, from another build of onnxruntime, say)."""
    if isinstance(value, float):
        return round(value, 5)
    if isinstance(value, list):
        return [_rounded(item) for item in value]
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    return value


def _files(folder):
    return {path.name: path.read_bytes() for path in folder.iterdir()}


def test_filter_tags_the_captions_of_the_copies_and_never_the_sources(frames, tmp_path):
    root, scores, tags = frames
    sources = _files(root)
    out = tmp_path / 'kept'
    run('filter', '--scores', scores, '--out', out, '--min-label', 'poor', '--caption', check_code=0)
    assert tags['f0.png'].endswith(' face quality')
    assert (out / 'f0.txt').read_text() == f'1girl, solo, {tags["f0.png"]}'  # kohya's ", " between tags
    assert (out / 'f2.txt').read_text() == tags['f2.png']  # no caption before: the tag alone
    assert _files(root) == sources
    kept = _files(out)
    run('filter', '--scores', scores, '--out', out, '--min-label', 'poor', '--caption', check_code=0)
    assert _files(out) == kept  # a rerun finds every caption tagged already


@pytest.mark.parametrize('policy, expected', [('prepend', 'nice face, 1girl, solo'), ('skip', '1girl, solo\n'),
                                              ('overwrite', 'nice face')])
def test_caption_policies_extension_and_tag_text(frames, tmp_path, policy, expected):
    root, scores, tags = frames
    os.rename(root / 'f0.txt', root / 'f0.caption')
    out = tmp_path / 'kept'
    label = tags['f0.png'].split()[0]
    run('filter', '--scores', scores, '--out', out, '--min-label', 'poor', '--caption-extension', 'caption',
        '--caption-policy', policy, '--caption-tag', f'{label}=nice face', check_code=0)
    assert (out / 'f0.caption').read_text() == expected
    assert not (out / 'f0.txt').exists()
    assert (root / 'f0.caption').read_text() == '1girl, solo\n'


def test_hard_linked_captions_are_written_as_new_files(frames, tmp_path):
    root, scores, tags = frames
    out = tmp_path / 'kept'
    run('filter', '--scores', scores, '--out', out, '--min-label', 'poor', '--mode', 'hardlink', '--caption',
        check_code=0)
    assert os.path.samefile(root / 'f0.png', out / 'f0.png')
    assert not os.path.samefile(root / 'f0.txt', out / 'f0.txt')
    assert (root / 'f0.txt').read_text() == '1girl, solo\n'
    assert (out / 'f0.txt').read_text().endswith(tags['f0.png'])


def test_moved_captions_change_only_when_asked(frames, tmp_path):
    root, scores, tags = frames
    out = tmp_path / 'kept'
    refused = run('filter', '--scores', scores, '--out', out, '--min-label', 'poor', '--mode', 'move', '--caption',
                  check_code=2)
    assert '--edit-moved-files' in refused.stderr
    assert (root / 'f0.txt').exists() and not out.exists()
    run('filter', '--scores', scores, '--out', out, '--min-label', 'poor', '--mode', 'move', '--caption',
        '--edit-moved-files', check_code=0)
    assert not (root / 'f0.txt').exists() and not (root / 'f0.png').exists()
    assert (out / 'f0.txt').read_text() == f'1girl, solo, {tags["f0.png"]}'


def test_waifuc_meta_is_merged_with_the_filename(frames, tmp_path):
    root, scores, tags = frames
    out = tmp_path / 'kept'
    before = (root / '.f1_meta.json').read_text()
    run('filter', '--scores', scores, '--out', out, '--min-label', 'poor', '--waifuc-meta', check_code=0)
    meta = json.loads((out / '.f1_meta.json').read_text())
    assert meta['tags'] == {'1girl': 0.98} and meta['url'] == 'https://example.org/1'  # kept
    assert meta['filename'] == 'f1.png'
    assert tags['f1.png'] == f'{meta["face_quality"]["label"]} face quality'
    saved = [result for result in scored_images(read_scores(str(scores)).rows) if result.image.path.endswith('f1.png')]
    assert [face['quality'] for face in meta['face_quality']['faces']] == [face.quality for face in saved[0].faces]
    assert json.loads((out / '.f2_meta.json').read_text())['filename'] == 'f2.png'  # none before: a new one
    assert (root / '.f1_meta.json').read_text() == before
    assert not (out / 'f0.txt').read_text().endswith('quality')  # no --caption: the caption as it was


def test_a_meta_file_that_is_not_an_object_is_reported_and_left(frames, tmp_path):
    root, scores, _ = frames
    (root / '.f2_meta.json').write_text('[1, 2]')
    out = tmp_path / 'kept'
    result = run('filter', '--scores', scores, '--out', out, '--min-label', 'poor', '--waifuc-meta', check_code=1)
    assert 'not a JSON object' in result.stderr and '.f2_meta.json' in result.stderr
    assert not (out / '.f2_meta.json').exists() and (out / 'f2.png').exists()


def test_gallery_dl_metadata_and_kohya_latents_travel_by_default(frames, tmp_path):
    root, scores, _ = frames
    assert sorted(os.path.basename(path) for path, _ in find_sidecars(str(root / 'f1.png'))) == [
        '.f1_meta.json', 'f1.npz', 'f1.png.json', 'f1_1024x0768_sdxl.npz']
    out = tmp_path / 'kept'
    run('filter', '--scores', scores, '--out', out, '--min-label', 'poor', '--mode', 'move', check_code=0)
    assert {'f1.png.json', 'f1_1024x0768_sdxl.npz', 'f1.npz', '.f1_meta.json'} <= set(os.listdir(out))
    assert not any(name.startswith('f1') for name in os.listdir(root))


def test_a_name_pattern_follows_a_renamed_image(tmp_path):
    (tmp_path / 'a').mkdir()
    (tmp_path / 'b').mkdir()
    image = tmp_path / 'a' / 'x.jpg'
    scene(0)[0].save(image)
    (tmp_path / 'a' / 'x.jpg.json').write_text('{}')
    (path, pattern), = find_sidecars(str(image), ['{name}.json'])
    assert pattern == '{stem}.jpg.json'


def test_crop_writes_a_caption_per_face(frames, tmp_path):
    _, scores, _ = frames
    out = tmp_path / 'crops'
    run('crop', '--scores', scores, '--out', out, '--sidecar', '--caption', '--caption-tag', 'poor=', check_code=0)
    captions = sorted(out.glob('*.txt'))
    crops = sorted(out.glob('*.png'))
    faces = [json.loads(path.with_suffix('.json').read_text()) for path in crops]
    assert len(captions) == sum(face['label'] != 'poor' for face in faces) > 0
    for face, crop in zip(faces, crops):
        caption = crop.with_suffix('.txt')
        assert (caption.read_text() == f'{face["label"]} face quality') if face['label'] != 'poor' \
            else not caption.exists()


@pytest.mark.skipif(os.name != "posix", reason="the umask is POSIX's")
def test_captions_follow_the_umask(frames, tmp_path):
    _, scores, _ = frames
    old = os.umask(0o027)
    try:
        run('filter', '--scores', scores, '--out', tmp_path / 'kept', '--min-label', 'poor', '--caption',
            '--waifuc-meta', check_code=0)
    finally:
        os.umask(old)
    for name in ('f0.txt', '.f0_meta.json'):
        assert os.stat(tmp_path / 'kept' / name).st_mode & 0o777 == 0o640


def test_caption_text_rules():
    assert captioned('a, b,', 'q') == 'a, b, q'
    assert captioned('  ', 'q', 'skip') == 'q'
    assert captioned('a, q', 'q', 'prepend') == 'a, q'
    with pytest.raises(ValueError, match='append, prepend, skip, overwrite'):
        captioned('a', 'q', 'replace')
    with pytest.raises(ValueError, match='unknown classes great'):
        TrainingFiles(tags={'great': 'x'})
    assert TrainingFiles('.caption', meta=True).sidecars_to_place(['.txt', '{stem}.caption', '.{stem}_meta.json',
                                                                   '.npz']) == ['.txt', '.npz']


def test_the_training_files_page_shows_what_filter_writes(example_folder):
    """docs/training-files.md, run: the files it shows before are what its Python block writes, and the
    files it shows after are what its command writes; the sources stay as they were."""
    page = (ROOT / 'docs' / 'training-files.md').read_text(encoding='utf-8')
    for block in python_blocks(ROOT / 'docs' / 'training-files.md'):
        exec(compile(block, 'training-files.md', 'exec'), {})
    sources = _files(example_folder / 'shots')
    blocks = re.findall(r'<!-- (file|expect): (\S+) -->\n```(\w+)\n(.*?)```', page, re.DOTALL)
    for kind, path, _, text in blocks:
        if kind == 'file':
            assert (example_folder / path).read_text(encoding='utf-8') == text
    commands = [line for block in re.findall(r'```bash\n(.*?)```', page, re.DOTALL) for line in block.splitlines()]
    for command in commands:
        program, *args = shlex.split(command)
        assert program == 'imgutils-facequal'
        run(*args, '-q', check_code=0)
    expected = [(path, language, text) for kind, path, language, text in blocks if kind == 'expect']
    assert len(expected) == 2
    for path, language, text in expected:
        written = (example_folder / path).read_text(encoding='utf-8')
        assert (_rounded(json.loads(written)) == _rounded(json.loads(text))) if language == 'json' \
            else written == text.rstrip('\n')
    assert {'frame.png', 'frame.png.json', 'frame_0384x0256_sdxl.npz'} <= set(os.listdir(example_folder / 'train'))
    assert _files(example_folder / 'shots') == sources


def test_latent_caches_of_a_large_folder_are_found_with_one_listing(tmp_path, monkeypatch):
    from imgutils_facequal.curate import placement
    for index in range(30):
        (tmp_path / f'f{index}.png').write_bytes(b'')
        (tmp_path / f'f{index}_0512x0768_sdxl.npz').write_bytes(b'')
    (tmp_path / 'f1_extra_0512x0768_sdxl.npz').write_bytes(b'')  # another image's cache, not f1's
    listings = []
    real_listdir = os.listdir
    monkeypatch.setattr(placement.os, 'listdir', lambda path: listings.append(path) or real_listdir(path))
    found = [find_sidecars(str(tmp_path / f'f{index}.png'), ['{stem}_{size}_sdxl.npz']) for index in range(30)]
    assert [[os.path.basename(path) for path, _ in pairs] for pairs in found] == \
        [[f'f{index}_0512x0768_sdxl.npz'] for index in range(30)]
    assert len(listings) == 1  # not one per image: a folder of 100,000 frames would take hours
