"""Hardening of filter and crop from saved scores (issue 33, items 1-7, 20 and 29): writes stay inside
the folders named, names built from data are safe and short enough, the manifest never overwrites,
moves finish on a rerun and put one image in one place, symbolic links stand for their real file,
and images that failed when they were scored are no failure of this command.

Saved scores are written here by hand where no model is needed (the rows `score` writes); a fault
(a cross-device link, a source that cannot be removed, a full disk) is injected at the ``os`` call
where the system would raise it, and the rest of the code runs as it is.
"""
import errno
import json
import os
import subprocess

import pytest
from PIL import Image

from imgutils_facequal import filter_images, place_file
from imgutils_facequal.curate import FolderFilter
from imgutils_facequal.curate.placement import SourceGone
from imgutils_facequal.curate.naming import MAX_NAME_BYTES, crop_name, fit_name, safe_name, target_in
from imgutils_facequal.pipeline import InputImage
from tests.support.cli import SCRIPT, run, write_scenes

SCORES = {'poor': 0.0, 'ok': 0.0, 'good': 0.0, 'excellent': 1.0}


def row(image, width=16, height=16, label='excellent', error=None):
    """The row `score` writes for an image with one face over all of it (or for an unreadable one)."""
    if error is not None:
        return {'image': image, 'face': None, 'faces': None, 'width': None, 'height': None, 'bbox': None,
                'label': None, 'score': None, 'scores': None, 'quality': None, 'detection_score': None,
                'head_bbox': None, 'crop_bbox': None, 'error': error}
    return {'image': image, 'face': 0, 'faces': 1, 'width': width, 'height': height, 'bbox': [0, 0, width, height],
            'label': label, 'score': 1.0, 'scores': dict(SCORES), 'quality': 1.0, 'detection_score': 0.9,
            'head_bbox': None, 'crop_bbox': [0, 0, width, height], 'error': None}


def write_scores(path, rows, provenance=None):
    path.write_text(''.join(json.dumps(item) + '\n' for item in rows))
    if provenance is not None:
        (path.parent / (path.name + '.meta.json')).write_text(json.dumps(provenance))
    return path


def image(path, size=(16, 16), colour=(200, 30, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new('RGB', size, colour).save(path)
    return path


def files_under(folder):
    return sorted(os.path.relpath(os.path.join(directory, name), folder)
                  for directory, _, names in os.walk(folder) for name in names)


# ------------------------------------------------------------------ 1: writes stay inside --out


def test_relative_paths_that_share_no_first_folder_land_inside_out(tmp_path):
    work = tmp_path / 'work'
    image(work / 'frames' / 'a.png')
    image(tmp_path / 'other' / 'b.png')
    image(tmp_path / 'far' / 'deep' / 'c.png')
    scores = write_scores(work / 'scores.jsonl', [row('frames/a.png'), row('../other/b.png'),
                                                  row('frames/../../far/deep/c.png')])
    before = set(files_under(tmp_path))
    run('filter', '--scores', scores, '--out', 'keep', '--min-label', 'good', check_code=0, cwd=work)
    kept = files_under(work / 'keep')
    assert kept == ['far/deep/c.png', 'other/b.png', 'work/frames/a.png']
    assert set(files_under(tmp_path)) - before == {f'work/keep/{name}' for name in kept}  # nothing anywhere else
    run('crop', '--scores', scores, '--out', 'crops', check_code=0, cwd=work)
    assert len(files_under(work / 'crops')) == 3
    assert set(files_under(tmp_path)) - before == {f'work/keep/{name}' for name in kept} | {
        f'work/crops/{name}' for name in files_under(work / 'crops')}


def test_a_target_outside_the_folder_is_refused_before_anything_is_written(tmp_path):
    source = image(tmp_path / 'b.png')
    out = tmp_path / 'deep' / 'out'
    with pytest.raises(ValueError, match='outside'):
        FolderFilter([InputImage(str(source), root=str(tmp_path / 'sub'))], str(out), min_label='poor')
    assert not (tmp_path / 'deep').exists() and source.exists()
    with pytest.raises(ValueError, match='outside'):
        target_in(str(out), os.path.join('..', '..', 'x.png'))


def test_scores_made_in_another_folder_name_that_folders_images(tmp_path):
    """Scores made in A/ with relative paths, used from B/: A's images move, B's (of other sizes) stay."""
    a, b = tmp_path / 'A', tmp_path / 'B'
    write_scenes(a / 'frames', 2)
    for index in range(2):
        image(b / 'frames' / f'{index}.png', size=(40, 30))
    run('score', 'frames', '-o', 'scores.jsonl', '-q', '--crop', 'face', '--margin', '0', check_code=0, cwd=a)
    recorded = json.loads((a / 'scores.jsonl.meta.json').read_text())
    assert recorded['working_dir'] == str(a) and recorded['roots'] == [str(a / 'frames')]
    theirs = {name: (b / 'frames' / name).read_bytes() for name in os.listdir(b / 'frames')}
    run('filter', '--scores', '../A/scores.jsonl', '--out', 'keep', '--min-label', 'poor', '--mode', 'move',
        check_code=0, cwd=b)
    assert files_under(b / 'keep') == ['0.png', '1.png'] and not os.listdir(a / 'frames')
    assert {name: (b / 'frames' / name).read_bytes() for name in os.listdir(b / 'frames')} == theirs
    # scores from elsewhere whose folder is not here: read from the current folder, and B's images, of another
    # size than those scored, are left where they are
    (a / 'frames').rmdir()
    os.rename(b / 'keep', a / 'frames')
    moved = tmp_path / 'moved-scores.jsonl'
    os.rename(a / 'scores.jsonl', moved)
    recorded['working_dir'] = str(tmp_path / 'gone')
    (tmp_path / 'moved-scores.jsonl.meta.json').write_text(json.dumps(recorded))
    result = run('filter', '--scores', moved, '--out', 'keep', '--min-label', 'poor', '--mode', 'move',
                 check_code=1, cwd=b)
    assert 'which is not here' in result.stderr and result.stderr.count('not the image that was scored') == 2
    assert {name: (b / 'frames' / name).read_bytes() for name in os.listdir(b / 'frames')} == theirs
    assert not (b / 'keep').exists() or not files_under(b / 'keep')


# ------------------------------------------------------------------ 2 and 20: names from data


def test_names_built_from_data_are_safe_and_short():
    assert safe_name('../../up') == '.._.._up' and os.sep not in safe_name('a/b\\c') and safe_name('..') == '_'
    assert crop_name('x', 1, '../../etc', 0.5) == 'x_1_.._.._etc_0.500'
    long_stems = ['é' * 126 + 'a', 'é' * 126 + 'b']  # 253 bytes each
    names = [crop_name(stem, 0, 'good', 0.25) for stem in long_stems]
    assert len(set(names)) == 2 and all(len(os.fsencode(name + '.json')) <= MAX_NAME_BYTES for name in names)
    assert all(name.endswith('_0_good_0.250') for name in names)
    assert len(os.fsencode(fit_name('x' * 10, 'y' * 400))) <= MAX_NAME_BYTES


def test_a_label_with_separators_never_writes_outside_out(tmp_path):
    source = image(tmp_path / 'frames' / 'a.png')
    scores = write_scores(tmp_path / 'scores.jsonl', [row(str(source), label='/../../../escaped')])
    out = tmp_path / 'deep' / 'crops'
    before = set(files_under(tmp_path))
    result = run('crop', '--scores', scores, '--out', out)
    assert 'Traceback' not in result.stderr and result.returncode in (0, 2)  # the reader may refuse such a label
    assert {path for path in set(files_under(tmp_path)) - before if not path.startswith('deep/crops/')} == set()


def test_crop_writes_crops_for_stems_near_255_bytes(tmp_path):
    stems = ['a' * 250, 'a' * 249 + 'b', 'é' * 125]
    sources = [image(tmp_path / 'frames' / f'{stem}.png', colour=(index * 80, 0, 0))
               for index, stem in enumerate(stems)]
    scores = write_scores(tmp_path / 'scores.jsonl', [row(str(path)) for path in sources])
    result = run('crop', '--scores', scores, '--out', tmp_path / 'crops', check_code=0)
    assert 'Wrote 3 crops' in result.stderr
    names = os.listdir(tmp_path / 'crops')
    assert len(names) == 3 and all(len(os.fsencode(name)) <= MAX_NAME_BYTES for name in names)
    run('crop', '--scores', scores, '--out', tmp_path / 'crops', '--sidecar', check_code=0)
    assert len(os.listdir(tmp_path / 'crops')) == 9  # and their JSON files
    again = run('crop', '--scores', scores, '--out', tmp_path / 'crops', check_code=0)
    assert '3 were there already' in again.stderr


def test_filter_copies_names_of_many_bytes_near_the_limit(tmp_path):
    source = image(tmp_path / 'frames' / ('あ' * 83 + '.png'))  # 253 bytes, 87 characters
    (tmp_path / 'frames' / ('あ' * 83 + '.txt')).write_text('caption')
    scores = write_scores(tmp_path / 'scores.jsonl', [row(str(source))])
    run('filter', '--scores', scores, '--out', tmp_path / 'keep', '--min-label', 'good', check_code=0)
    assert sorted(os.listdir(tmp_path / 'keep')) == ['あ' * 83 + '.png', 'あ' * 83 + '.txt']


# ------------------------------------------------------------------ 3: the manifest


def test_the_manifest_never_overwrites_and_is_checked_before_anything_moves(tmp_path):
    sources = [image(tmp_path / 'frames' / f'{index}.png') for index in range(2)]
    scores = write_scores(tmp_path / 'scores.jsonl', [row(str(path)) for path in sources])
    text = scores.read_text()
    out = tmp_path / 'keep'
    for manifest, code, said in ((scores, 2, 'never overwritten'),
                                 (tmp_path / 'scores.jsonl' / 'kept.txt', 3, 'cannot write')):
        result = run('filter', '--scores', scores, '--out', out, '--min-label', 'good', '--mode', 'move',
                     '--manifest', manifest, check_code=code)
        assert said in result.stderr and scores.read_text() == text
        assert all(path.exists() for path in sources) and not out.exists()


def test_a_manifest_that_cannot_be_written_at_the_end_is_a_message(tmp_path, monkeypatch):
    sources = [image(tmp_path / 'frames' / f'{index}.png') for index in range(2)]
    scores = write_scores(tmp_path / 'scores.jsonl', [row(str(path)) for path in sources])
    real_link = os.link

    def full_disk(source, target, *args, **kwargs):
        if os.path.basename(target) == 'kept.txt':
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_link(source, target, *args, **kwargs)

    monkeypatch.setattr(os, 'link', full_disk)
    result = run('filter', '--scores', scores, '--out', tmp_path / 'keep', '--min-label', 'good', '--manifest',
                 tmp_path / 'kept.txt', check_code=3)
    assert 'Kept 2 of 2 images' in result.stderr and 'kept.txt was not written' in result.stderr
    assert 'No space left' in result.stderr and not (tmp_path / 'kept.txt').exists()
    assert [name for name in os.listdir(tmp_path) if name.endswith('.partial')] == []


def test_an_interrupted_run_leaves_the_manifest_to_the_run_that_completes(tmp_path, monkeypatch):
    sources = [image(tmp_path / 'frames' / f'{index}.png', colour=(index, 0, 0)) for index in range(3)]
    scores = write_scores(tmp_path / 'scores.jsonl', [row(str(path)) for path in sources])
    manifest, out = tmp_path / 'kept.txt', tmp_path / 'keep'
    real_link = os.link

    def ctrl_c_at_the_second(source, target, *args, **kwargs):
        if os.path.basename(target) == '1.png':
            raise KeyboardInterrupt
        return real_link(source, target, *args, **kwargs)

    monkeypatch.setattr(os, 'link', ctrl_c_at_the_second)
    result = run('filter', '--scores', scores, '--out', out, '--min-label', 'good', '--mode', 'move', '--manifest',
                 manifest, check_code=130)
    assert 'written by the run that completes' in result.stderr and not manifest.exists()
    monkeypatch.setattr(os, 'link', real_link)
    run('filter', '--scores', scores, '--out', out, '--min-label', 'good', '--mode', 'move', '--manifest', manifest,
        check_code=0)
    assert manifest.read_text().splitlines() == [str(out / f'{index}.png') for index in range(3)]


def test_names_holding_a_line_break_need_a_nul_separated_manifest(tmp_path):
    odd = image(tmp_path / 'frames' / 'two\nlines.png')
    plain = image(tmp_path / 'frames' / 'plain.png')
    scores = write_scores(tmp_path / 'scores.jsonl', [row(str(odd)), row(str(plain))])
    out, manifest = tmp_path / 'keep', tmp_path / 'kept.txt'
    result = run('filter', '--scores', scores, '--out', out, '--min-label', 'good', '--mode', 'move',
                 '--manifest', manifest, check_code=2)
    assert 'manifest-format nul' in result.stderr and odd.exists() and not out.exists()
    run('filter', '--scores', scores, '--out', out, '--min-label', 'good', '--mode', 'move', '--manifest', manifest,
        '--manifest-format', 'nul', check_code=0)
    assert manifest.read_bytes().split(b'\0') == [os.fsencode(out / 'two\nlines.png'), os.fsencode(out / 'plain.png'),
                                                  b'']


# ------------------------------------------------------------------ 4 and 5: moves finish on a rerun


def test_a_rerun_moves_the_captions_an_interrupted_move_left(tmp_path):
    root = tmp_path / 'frames'
    source = image(root / 'a.png')
    (root / 'a.txt').write_text('a caption')
    (root / 'a.caption').write_text('another')
    scores = write_scores(tmp_path / 'scores.jsonl', [row(str(source)), row(str(image(root / 'b.png')))])
    out = tmp_path / 'keep'
    out.mkdir()
    os.rename(source, out / 'a.png')  # killed after the image, before its sidecars
    result = run('filter', '--scores', scores, '--out', out, '--min-label', 'good', '--mode', 'move', check_code=0)
    assert '1 were there already' in result.stderr
    assert (out / 'a.txt').read_text() == 'a caption' and (out / 'a.caption').read_text() == 'another'
    assert sorted(os.listdir(root)) == []


@pytest.fixture
def across_devices(monkeypatch):
    """Hard links fail as between two file systems (EXDEV), so a move copies and then removes."""
    def cross_device(source, target, *args, **kwargs):
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), source, None, target)
    monkeypatch.setattr(os, 'link', cross_device)


def test_a_rerun_finishes_a_move_across_file_systems_cut_short(tmp_path, across_devices):
    root = tmp_path / 'frames'
    sources = [image(root / f'{index}.png', colour=(index, 0, 0)) for index in range(3)]
    data = {path.name: path.read_bytes() for path in sources}
    scores = write_scores(tmp_path / 'scores.jsonl', [row(str(path)) for path in sources])
    out = tmp_path / 'keep'
    out.mkdir()
    (out / '0.png').write_bytes(data['0.png'])  # killed between the copy and the unlink
    result = run('filter', '--scores', scores, '--out', out, '--min-label', 'good', '--mode', 'move', check_code=0)
    assert 'Kept 3 of 3 images' in result.stderr and '1 were there already' in result.stderr
    assert os.listdir(root) == [] and {name: (out / name).read_bytes() for name in os.listdir(out)} == data


def test_a_source_that_cannot_be_removed_is_said_to_be_in_both_places(tmp_path, across_devices, monkeypatch):
    root = tmp_path / 'frames'
    sources = [image(root / f'{index}.png', colour=(index, 0, 0)) for index in range(2)]
    (root / '1.txt').write_text('caption')
    scores = write_scores(tmp_path / 'scores.jsonl', [row(str(path)) for path in sources])
    real_unlink = os.unlink

    def read_only(path, *args, **kwargs):
        if os.path.dirname(os.path.abspath(path)) == str(root):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, 'unlink', read_only)
    out = tmp_path / 'keep'
    for attempt in range(2):  # the rerun says the same, and copies nothing twice
        result = run('filter', '--scores', scores, '--out', out, '--min-label', 'good', '--mode', 'move',
                     check_code=1)
        assert 'Kept 2 of 2 images' in result.stderr
        assert '3 files are at their target but also still at their source' in result.stderr
        assert 'in both places' in result.stderr and 'failed to move' not in result.stderr
        assert sorted(os.listdir(out)) == ['0.png', '1.png', '1.txt']
    monkeypatch.setattr(os, 'unlink', real_unlink)  # the folder made writable: the rerun finishes the move
    run('filter', '--scores', scores, '--out', out, '--min-label', 'good', '--mode', 'move', check_code=0)
    assert os.listdir(root) == [] and sorted(os.listdir(out)) == ['0.png', '1.png', '1.txt']


# ------------------------------------------------------------------ 6: one image, one place


def test_moves_into_different_folders_at_once_put_each_image_in_one(tmp_path):
    """Three real processes move the same 2000 images into train/, validation/ and test/ at once (one that
    starts later finds the first images gone, catches up, and then they reach for the same ones)."""
    COUNT, FOLDERS = 2000, ('train', 'validation', 'test')
    root = tmp_path / 'frames'
    root.mkdir()
    rows = []
    for index in range(COUNT):
        path = root / f'{index:04d}.png'
        path.write_bytes(f'file {index}'.encode())
        (root / f'{index:04d}.txt').write_text(f'caption {index}')
        rows.append(row(str(path), width=8, height=8))
    scores = write_scores(tmp_path / 'scores.jsonl', rows)
    logs = [open(tmp_path / f'stderr{number}.txt', 'w') for number in range(3)]
    processes = [subprocess.Popen([SCRIPT, 'filter', '--scores', str(scores), '--out', str(tmp_path / folder),
                                   '--min-label', 'good', '--mode', 'move', '-q'], stdout=subprocess.DEVNULL,
                                  stderr=log, stdin=subprocess.DEVNULL)
                 for folder, log in zip(FOLDERS, logs)]
    codes = [process.wait(timeout=120) for process in processes]
    for log in logs:
        log.close()
    places = {}
    for folder in FOLDERS + ('frames',):
        for name in os.listdir(tmp_path / folder) if (tmp_path / folder).exists() else ():
            places.setdefault(name, []).append(folder)
    assert sorted(places) == sorted(f'{index:04d}{ext}' for index in range(COUNT) for ext in ('.png', '.txt'))
    assert all(len(found) == 1 for found in places.values()), [n for n, f in places.items() if len(f) > 1][:5]
    assert all(places[f'{index:04d}.txt'] == places[f'{index:04d}.png'] for index in range(COUNT))
    assert set(codes) <= {0, 1}


@pytest.mark.parametrize('cross_device', [False, True])
def test_the_move_that_finds_its_source_gone_takes_back_its_copy(tmp_path, monkeypatch, cross_device):
    """The worst moment, made certain: another run moves the source into validation/ just after this run put
    it in train/ and before it removes the source."""
    source = tmp_path / 'frames' / 'a.png'
    image(source)
    data = source.read_bytes()
    real_unlink, real_link = os.unlink, os.link
    if cross_device:
        def no_link(src, dst, *args, **kwargs):
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), src, None, dst)
        monkeypatch.setattr(os, 'link', no_link)

    def another_run_first(path, *args, **kwargs):
        if str(path) == str(source):
            (tmp_path / 'validation').mkdir()
            os.rename(source, tmp_path / 'validation' / 'a.png')
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, 'unlink', another_run_first)
    with pytest.raises(SourceGone, match='moved away meanwhile'):
        place_file(str(source), str(tmp_path / 'train' / 'a.png'), 'move')
    monkeypatch.setattr(os, 'link', real_link)
    assert os.listdir(tmp_path / 'train') == [] and (tmp_path / 'validation' / 'a.png').read_bytes() == data


def test_filter_images_reads_relative_paths_from_the_folder_scored_in(tmp_path, monkeypatch):
    scored_in = tmp_path / 'A'
    source = image(scored_in / 'frames' / 'a.png')
    decoy = image(tmp_path / 'B' / 'frames' / 'a.png', size=(20, 20))
    monkeypatch.chdir(tmp_path / 'B')
    summary = filter_images([row('frames/a.png')], 'keep', min_label='good', mode='move', working_dir=str(scored_in))
    assert summary.kept == [os.path.join('keep', 'a.png')] and not source.exists() and decoy.exists()
    again = filter_images([row('frames/a.png')], 'again', min_label='good', mode='move')  # from here: the decoy
    assert again.kept == [] and decoy.exists() and 'not the image that was scored' in again.failed[0][1]


# ------------------------------------------------------------------ 7: symbolic links


def test_the_real_file_wins_over_a_link_to_it(tmp_path):
    root = tmp_path / 'frames'
    real = image(root / 'real.png')
    (root / 'real.txt').write_text('the caption')
    os.symlink('real.png', root / 'alias.png')  # a relative link: it would dangle anywhere else
    scores = write_scores(tmp_path / 'scores.jsonl', [row(str(root / 'alias.png'))])  # as score keeps one spelling
    out = tmp_path / 'keep'
    for code in (0, 0):  # a rerun finds the hard link in place: no false conflict
        result = run('filter', '--scores', scores, '--out', out, '--min-label', 'good', '--mode', 'hardlink',
                     check_code=code)
    assert '1 were there already' in result.stderr and 'not overwriting' not in result.stderr
    assert sorted(os.listdir(out)) == ['real.png', 'real.txt'] and not os.path.islink(out / 'real.png')
    assert os.path.samefile(out / 'real.png', real)
    moved = tmp_path / 'moved'
    run('filter', '--scores', scores, '--out', moved, '--min-label', 'good', '--mode', 'move', check_code=0)
    assert sorted(os.listdir(moved)) == ['real.png', 'real.txt'] and not os.path.islink(moved / 'real.png')
    assert (moved / 'real.txt').read_text() == 'the caption' and not real.exists()


def test_a_link_to_a_file_elsewhere_lands_as_that_file(tmp_path):
    elsewhere = image(tmp_path / 'pool' / 'x.png')
    root = tmp_path / 'frames'
    root.mkdir()
    os.symlink(os.path.relpath(elsewhere, root), root / 'a.png')
    scores = write_scores(tmp_path / 'scores.jsonl', [row(str(root / 'a.png'))])
    for mode in ('copy', 'hardlink', 'move'):
        out = tmp_path / mode
        run('filter', '--scores', scores, '--out', out, '--min-label', 'good', '--mode', mode, check_code=0)
        assert os.listdir(out) == ['a.png'] and not os.path.islink(out / 'a.png')
        assert (out / 'a.png').read_bytes() == elsewhere.read_bytes()
    assert not os.path.lexists(root / 'a.png') and elsewhere.exists()  # the move took the link, not the pool's file


# ------------------------------------------------------------------ 29: failures from scoring time


def test_images_that_failed_when_scored_are_no_failure_of_filter_or_crop(tmp_path):
    source = image(tmp_path / 'frames' / 'a.png')
    scores = write_scores(tmp_path / 'scores.jsonl', [row(str(source)), row(str(tmp_path / 'frames' / 'bad.png'),
                                                                            error='cannot identify image file')])
    result = run('filter', '--scores', scores, '--out', tmp_path / 'keep', '--min-label', 'good', check_code=0)
    assert '1 had failed when they were scored' in result.stderr and 'bad.png' in result.stderr
    assert 'images/s' not in result.stderr and 'Kept 1 of 2 images' in result.stderr
    result = run('crop', '--scores', scores, '--out', tmp_path / 'crops', check_code=0)
    assert '1 image had failed when they were scored' in result.stderr and 'images/s' not in result.stderr
