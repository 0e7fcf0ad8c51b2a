"""Curating from saved scores: thresholds, filter and crop without a model, and file
operations that never overwrite and never leave partial files.

The command line runs in process (`tests.support.cli.run`), and in real processes where the
process is the point: an empty model cache (read when huggingface_hub is imported), two runs
at once, and the hardening tests, where a fault (a full disk, a destination that another
process creates at the worst moment) is injected by wrapping one ``os`` call in that process,
before the package is imported.
"""
import errno
import json
import os
import subprocess
import sys
from collections import Counter

import pytest
from hypothesis import given, settings, strategies as st
from PIL import Image

from imgutils_facequal import (DEFAULT_SIDECARS, filter_images, find_images, find_sidecars, kept_faces, kept_images,
                               load_face_quality_detector, output_stems, place_file, score_images_with,
                               scored_images, threshold_table)
from imgutils_facequal.curate import output_paths
from imgutils_facequal.pipeline import InputImage
from imgutils_facequal.store import make_provenance, rows_of, rows_table, settings_mismatches
from imgutils_facequal.store.formats import read_file
from tests.support.fake_hub import QUALITY_CLASSES, solid_image
from tests.support.cli import COLOUR_LABELS, SCRIPT, run, run_process, scene

RANK = {name: index for index, name in enumerate(QUALITY_CLASSES)}


def make_frames(root, count, start=0, captions=True):
    root.mkdir(parents=True, exist_ok=True)
    expected = {}
    for index in range(start, start + count):
        image, faces = scene(index)
        path = root / f'frame{index:03d}.png'
        image.save(path)
        expected[str(path)] = [COLOUR_LABELS[colour] for _, _, colour in faces]
        if captions:
            (root / f'frame{index:03d}.txt').write_text(f'caption {index}')
    return expected


@pytest.fixture
def scored(tmp_path):
    """Ten scenes (two folders), a frame without a face and an unreadable file, scored once."""
    root = tmp_path / 'frames'
    expected = make_frames(root, 6)
    expected.update(make_frames(root / 'ep2', 4, start=6))
    solid_image((0, 0, 0), size=(120, 90)).save(root / 'black.png')
    expected[str(root / 'black.png')] = []
    (root / 'broken.png').write_bytes(b'no image')
    scores = tmp_path / 'scores.jsonl'
    run('score', root, '-o', scores, '--crop', 'face', '--margin', '0', '-q', check_code=1)
    return root, scores, expected


def best(labels):
    return max(RANK[label] for label in labels)


# ------------------------------------------------------------------------------ thresholds, selection


def test_threshold_table_counts_what_each_threshold_keeps(scored):
    root, scores, expected = scored
    rows = read_file(str(scores)).rows
    table = threshold_table(rows)
    with_faces = {path: labels for path, labels in expected.items() if labels}
    assert (table.images, table.with_faces, table.failed) == (len(expected) + 1, len(with_faces), 1)
    assert table.faces == sum(len(labels) for labels in expected.values())
    assert table.per_class == {name: sum(labels.count(name) for labels in expected.values())
                               for name in QUALITY_CLASSES}
    by_class = {row.value: row for row in table.rows if row.option == 'min_label'}
    for name, rank in RANK.items():
        assert by_class[name].images == sum(best(labels) >= rank for labels in with_faces.values())
        assert by_class[name].images_every_face == sum(min(RANK[label] for label in labels) >= rank
                                                       for labels in with_faces.values())
        assert by_class[name].faces == sum(RANK[label] >= rank for labels in expected.values() for label in labels)
        assert by_class[name].images == len(kept_images(rows, min_label=name))
        assert by_class[name].images_every_face == len(kept_images(rows, min_label=name, every_face=True))
        assert by_class[name].faces == len(kept_faces(rows, min_label=name))
    for row in table.rows:
        if row.option == 'min_quality':
            assert row.faces == sum(1 for r in rows if r.get('quality') is not None and r['quality'] >= row.value)
    text = table.to_text()
    assert '--min-label excellent' in text and '--min-quality 0.50' in text


def test_rows_and_dataframes_nested_or_flat_give_the_same_answers(scored):
    import pandas as pd
    root, scores, expected = scored
    rows = read_file(str(scores)).rows
    nested = pd.DataFrame(rows)
    flat = rows_table(rows, QUALITY_CLASSES).to_pandas()
    want = kept_images(rows, min_label='good')
    assert want == [path for path, labels in expected.items() if labels and best(labels) >= RANK['good']]
    for frame in (nested, flat):
        assert kept_images(frame, min_label='good') == want
        assert threshold_table(frame) == threshold_table(rows)
        assert [r['image'] for r in kept_faces(frame, min_quality=0.5)] == [r['image'] for r in kept_faces(rows, min_quality=0.5)]
    results = scored_images(rows)
    assert {result.image.relative_path for result in results} == {os.path.relpath(p, root) for p in expected} | {
        'broken.png'}
    assert next(r for r in results if r.image.path.endswith('broken.png')).error


def test_filter_images_from_a_dataframe(scored, tmp_path):
    import pandas as pd
    root, scores, expected = scored
    frame = pd.DataFrame(read_file(str(scores)).rows)
    keep = sorted(os.path.relpath(path, root) for path, labels in expected.items()
                  if labels and best(labels) >= RANK['good'])
    dry = filter_images(frame, str(tmp_path / 'train'), min_label='good', dry_run=True,
                        manifest=str(tmp_path / 'train.txt'))
    assert not (tmp_path / 'train').exists() and not (tmp_path / 'train.txt').exists()
    summary = filter_images(frame, str(tmp_path / 'train'), min_label='good', manifest=str(tmp_path / 'train.txt'))
    assert summary.kept == dry.kept == (tmp_path / 'train.txt').read_text().splitlines()
    assert sorted(os.path.relpath(path, tmp_path / 'train') for path in summary.kept) == keep
    assert [path for path, _ in summary.failed] == [str(root / 'broken.png')] and summary.missing == []
    for name in keep:  # each with its caption
        assert (tmp_path / 'train' / name).read_bytes() == (root / name).read_bytes()
        assert (tmp_path / 'train' / name).with_suffix('.txt').read_text() == (root / name).with_suffix('.txt').read_text()


def test_live_results_and_saved_rows_round_trip(tmp_path):
    make_frames(tmp_path, 3, captions=False)
    faces = load_face_quality_detector(crop='face', margin=0)
    live = list(score_images_with(faces, find_images([str(tmp_path)])))
    again = scored_images(rows_of(live), root=str(tmp_path))
    assert [(r.image, r.faces, r.error, r.size) for r in again] == [(r.image, r.faces, r.error, r.size) for r in live]


# ----------------------------------------------------------------------------------- names, sidecars


@settings(deadline=None)  # pure, but a loaded 2-core machine can take 200 ms on one example
@given(st.lists(st.tuples(st.sampled_from(['a', 'b', 'a/b', 'c/d']), st.sampled_from(['x', 'y', 'x.png']),
                          st.sampled_from(['.png', '.jpg', '.PNG'])), min_size=1, max_size=12, unique=True))
def test_output_names_never_clash(entries):
    images = [InputImage(os.path.join('/nowhere', root, name + ext), os.path.join('/nowhere', root))
              for root, name, ext in entries]
    for names in (output_stems(images), output_paths(images)):
        assert len({os.path.normcase(name) for name in names.values()}) == len(images)
    assert output_stems(images) == output_stems(list(reversed(images)))  # the same inputs, the same names


def test_output_names_keep_plain_names_when_nothing_clashes(tmp_path):
    (tmp_path / 'a').mkdir()
    for name in ('a/x.png', 'a/x.jpg', 'a/y.png'):
        Image.new('RGB', (4, 4)).save(tmp_path / name)
    images = find_images([str(tmp_path / 'a')])
    assert sorted(output_stems(images).values()) == ['x.jpg', 'x.png', 'y']
    assert sorted(output_paths(images).values()) == ['x.jpg', 'x.png', 'y.png']


def test_sidecars_are_found_by_stem(tmp_path):
    image = tmp_path / 'x.png'
    Image.new('RGB', (4, 4)).save(image)
    for name in ('x.txt', 'x.caption', 'x.json', 'x.npz', '.x_meta.json', 'x.png.txt', 'xy.txt'):
        (tmp_path / name).write_text(name)
    found = find_sidecars(str(image))
    assert sorted(os.path.basename(path) for path, _ in found) == ['.x_meta.json', 'x.caption', 'x.json', 'x.npz',
                                                                   'x.txt']
    assert find_sidecars(str(image), ['.txt', '{stem}.png.txt']) == [(str(tmp_path / 'x.txt'), '.txt'),
                                                                    (str(tmp_path / 'x.png.txt'), '{stem}.png.txt')]
    assert DEFAULT_SIDECARS[-1] == '.{stem}_meta.json'


# ------------------------------------------------------------------------------------- place_file


@pytest.mark.parametrize('mode', ['copy', 'hardlink', 'move'])
def test_place_file_never_overwrites(tmp_path, mode):
    source, target = tmp_path / 'a.png', tmp_path / 'out' / 'a.png'
    source.write_bytes(b'mine')
    target.parent.mkdir()
    target.write_bytes(b'theirs')
    with pytest.raises(FileExistsError, match='not overwriting'):
        place_file(str(source), str(target), mode)
    assert source.read_bytes() == b'mine' and target.read_bytes() == b'theirs'
    target.unlink()
    assert place_file(str(source), str(target), mode) == 'placed'
    assert target.read_bytes() == b'mine' and os.path.exists(source) == (mode != 'move')
    if mode != 'move':
        assert place_file(str(source), str(target), mode) == 'present'  # a rerun
    assert sorted(os.listdir(target.parent)) == ['a.png']


def test_a_copy_cut_short_by_a_full_disk_leaves_nothing(tmp_path, monkeypatch):
    source, target = tmp_path / 'big.bin', tmp_path / 'out' / 'big.bin'
    source.write_bytes(os.urandom(300_000))
    real_sendfile = os.sendfile
    calls = []

    def full_disk(out_fd, in_fd, offset, count):
        calls.append(offset)
        if len(calls) == 1:
            return real_sendfile(out_fd, in_fd, offset, 196_608)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, 'sendfile', full_disk)
    with pytest.raises(OSError) as caught:
        place_file(str(source), str(target), 'copy')
    assert caught.value.errno == errno.ENOSPC and len(calls) == 2
    assert os.listdir(target.parent) == []  # no partial file, under its name or a temporary one
    monkeypatch.undo()
    assert place_file(str(source), str(target), 'copy') == 'placed'
    assert target.read_bytes() == source.read_bytes()


def test_a_destination_that_appears_before_the_link_is_kept(tmp_path, monkeypatch):
    """Another process creates the target between our decision and the link: its file stays."""
    source, target = tmp_path / 'a.png', tmp_path / 'out' / 'a.png'
    source.write_bytes(b'mine')
    real_link = os.link

    def link_late(src, dst, *args, **kwargs):
        if os.path.basename(dst) == 'a.png' and not os.path.exists(dst):
            subprocess.run([sys.executable, '-c', f'open({str(dst)!r}, "wb").write(b"theirs")'], check=True)
        return real_link(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, 'link', link_late)
    for mode in ('copy', 'move', 'hardlink'):
        with pytest.raises(FileExistsError):
            place_file(str(source), str(target), mode)
        assert target.read_bytes() == b'theirs' and source.read_bytes() == b'mine'
        assert os.listdir(target.parent) == ['a.png']
        target.unlink()


# --------------------------------------------------------------------------- the command line, saved


def run_in(env_update, *args, check_code=None):
    """The command in a process of its own with ``env_update`` in its environment (huggingface_hub reads its
    settings when it is imported)."""
    return run_process(*args, check_code=check_code, env=dict(os.environ, **env_update))


def test_filter_from_saved_scores_needs_no_model_and_matches_a_live_filter(scored, tmp_path):
    root, scores, expected = scored
    empty_cache = tmp_path / 'empty-cache'
    empty_cache.mkdir()
    offline = {'HF_HUB_CACHE': str(empty_cache), 'HF_HOME': str(empty_cache), 'HF_HUB_OFFLINE': '1',
               'IMGUTILS_FACEQUAL_HOME': str(empty_cache)}
    assert run_in(offline, 'score', root / 'frame000.png', check_code=3)  # no model there indeed
    saved = run_in(offline, 'filter', '--scores', scores, '--out', tmp_path / 'saved', '--min-label', 'good',
                   check_code=0)  # broken.png failed when scored: said, not this command's failure
    assert 'broken.png' in saved.stderr
    run('filter', root, '--out', tmp_path / 'live', '--min-label', 'good', '--crop', 'face', '--margin', '0',
        check_code=1)
    listing = {name: sorted(os.path.relpath(p, tmp_path / name) for p in (tmp_path / name).rglob('*') if p.is_file())
               for name in ('saved', 'live')}
    assert listing['saved'] == listing['live'] and listing['saved']
    want = sorted(os.path.relpath(path, root) for path, labels in expected.items()
                  if labels and best(labels) >= RANK['good'])
    assert [name for name in listing['saved'] if name.endswith('.png')] == want
    thresholds = run_in(offline, 'filter', '--scores', scores, '--thresholds', check_code=0).stdout
    line = next(line for line in thresholds.splitlines() if line.startswith('--min-label good '))
    assert int(line.split()[2]) == len(want)


def test_filter_reads_csv_scores_like_jsonl(scored, tmp_path):
    root, scores, _ = scored
    run('score', root, '-o', tmp_path / 'scores.csv', '--crop', 'face', '--margin', '0', '-q', check_code=1)
    outputs = [run('filter', '--scores', path, '--out', tmp_path / 'kept', '--min-quality', '0.5', '--dry-run',
                   check_code=0).stdout for path in (scores, tmp_path / 'scores.csv')]
    assert outputs[0] == outputs[1] and outputs[0].count('would copy') > 0
    assert run('filter', root, '--scores', scores, '--out', tmp_path / 'kept', '--min-quality', '0.5',
               check_code=2).stderr.count('not both') == 1


def test_filter_from_saved_scores_reports_images_gone(scored, tmp_path):
    root, scores, expected = scored
    (root / 'frame001.png').unlink()
    result = run('filter', '--scores', scores, '--out', tmp_path / 'kept', '--min-label', 'poor', check_code=1)
    assert f'missing {root / "frame001.png"}: listed in {scores} but no longer exists' in result.stderr
    assert 'no longer exist' in result.stderr.splitlines()[-1]
    assert not (tmp_path / 'kept' / 'frame001.png').exists() and (tmp_path / 'kept' / 'frame002.png').exists()


def test_filter_refuses_scores_made_with_other_options(scored, tmp_path):
    root, scores, _ = scored
    recorded = make_provenance(load_face_quality_detector(crop='face', margin=0))
    (tmp_path / 'scores.jsonl.meta.json').write_text(json.dumps(recorded))
    out = tmp_path / 'kept'
    for options, differs in ((['--crop', 'head'], "crop: 'face' in the scores, 'head' given"),
                             (['--margin', '0.5'], 'margin: 0 in the scores, 0.5 given'),
                             (['--model', 'caformer_s36'], "model_name: 'caformer_s36.head_crop' in the scores, "
                                                           "'caformer_s36' given"),
                             (['--conf-threshold', '0.4'], 'conf_threshold: None in the scores, 0.4 given')):
        result = run('filter', '--scores', scores, '--out', out, '--min-label', 'good', *options, check_code=2)
        assert differs in result.stderr and 'Drop those options' in result.stderr
    assert not out.exists()
    run('filter', '--scores', scores, '--out', out, '--min-label', 'good', '--crop', 'face', '--margin', '0',
        '--model', 'caformer_s36.head_crop', '-q', check_code=0)
    assert out.exists()
    assert settings_mismatches(recorded, crop='face', margin=0.0, backend='auto') == []


def test_sidecars_rejected_and_manifest_travel_with_the_images(scored, tmp_path):
    root, scores, expected = scored
    (root / '.frame000_meta.json').write_text('{"waifuc": 1}')
    (root / 'frame000.npz').write_bytes(b'npz')
    (root / 'frame001.caption').write_text('a caption')
    kept_dir, rejected_dir, manifest = tmp_path / 'kept', tmp_path / 'rejected', tmp_path / 'kept.txt'
    before = {path: open(path, 'rb').read() for path in map(str, root.rglob('*')) if os.path.isfile(path)}
    result = run('filter', '--scores', scores, '--out', kept_dir, '--min-label', 'excellent', '--mode', 'move',
                 '--rejected', rejected_dir, '--manifest', manifest, check_code=0)
    keep = {path for path, labels in expected.items() if labels and best(labels) == RANK['excellent']}
    reject = {path for path in expected if path not in keep}
    assert {str(kept_dir / os.path.relpath(p, root)) for p in keep} == set(manifest.read_text().splitlines())
    for path in keep | reject:
        folder = kept_dir if path in keep else rejected_dir
        target = folder / os.path.relpath(path, root)
        assert target.read_bytes() == before[path] and not os.path.exists(path)
        caption = os.path.splitext(path)[0] + '.txt'
        if caption in before:
            assert (folder / os.path.relpath(caption, root)).read_bytes() == before[caption]
    where = kept_dir if str(root / 'frame000.png') in keep else rejected_dir
    assert (where / '.frame000_meta.json').exists() and (where / 'frame000.npz').exists()
    where = kept_dir if str(root / 'frame001.png') in keep else rejected_dir
    assert (where / 'frame001.caption').read_text() == 'a caption'
    assert (root / 'broken.png').exists()  # failed when scored: left where it is
    # every file is somewhere, once
    moved = {str(path): path.read_bytes() for folder in (kept_dir, rejected_dir, root) for path in folder.rglob('*')
             if path.is_file()}
    assert sorted(Counter(before.values()).elements()) == sorted(Counter(moved.values()).elements())
    # a rerun finds them all in place: nothing to do, nothing lost
    again = run('filter', '--scores', scores, '--out', kept_dir, '--min-label', 'excellent', '--mode', 'move',
                '--rejected', rejected_dir, check_code=0)
    assert 'were there already' in again.stderr and 'missing' not in again.stderr
    assert 'Kept' in result.stderr


def test_filter_out_inside_the_source_does_not_nest_on_rerun(tmp_path):
    root = tmp_path / 'frames'
    make_frames(root, 4, captions=False)
    out = root / 'keep'
    for _ in range(2):
        run('filter', root, '--out', out, '--min-label', 'poor', '--crop', 'face', '--margin', '0',
            check_code=0)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob('*')) == [f'frame{i:03d}.png' for i in range(4)]


def test_crop_names_never_clash_and_a_rerun_overwrites_nothing(tmp_path):
    for folder in ('a', 'b'):
        make_frames(tmp_path / folder, 1, start=1 if folder == 'a' else 3, captions=False)
        os.replace(tmp_path / folder / f'frame00{1 if folder == "a" else 3}.png', tmp_path / folder / 'x.png')
    scene(2)[0].convert('RGB').save(tmp_path / 'a' / 'x.jpg', quality=95)
    out = tmp_path / 'crops'
    result = run('crop', str(tmp_path / '*' / 'x.*'), '--out', out, '--crop', 'face', '--margin', '0', check_code=0)
    names = sorted(p.name for p in out.rglob('*.png'))
    # a/x.png and a/x.jpg sit side by side: their names keep the extension; b/x.png is plain x
    prefixes = Counter(name.split('_')[0] for name in names)
    assert prefixes == {'x.png': len(scene(1)[1]), 'x.jpg': len(scene(2)[1]), 'x': len(scene(3)[1])}, names
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob('*')}
    again = run('crop', str(tmp_path / '*' / 'x.*'), '--out', out, '--crop', 'face', '--margin', '0', check_code=0)
    assert f'{len(names)} were there already' in again.stderr and 'Wrote 0 crops' in again.stderr
    assert {p: p.stat().st_mtime_ns for p in out.rglob('*')} == stamps
    # other crops under the same names are refused, not written over
    other = run('crop', str(tmp_path / '*' / 'x.*'), '--out', out, '--crop', 'face', '--margin', '1', '--sidecar',
                check_code=0)
    assert 'Wrote' in other.stderr
    clash = run('crop', str(tmp_path / '*' / 'x.*'), '--out', out, '--crop', 'full', '--sidecar', check_code=1)
    assert 'exists with other content; not overwriting it' in clash.stderr
    assert {p: p.stat().st_mtime_ns for p in out.rglob('*') if p in stamps} == stamps
    assert result.returncode == 0


def test_the_same_name_under_two_roots_keeps_both(tmp_path):
    """crop and filter over a glob of a/x.png and b/x.png: one set no longer overwrites the other."""
    for folder, index in (('a', 1), ('b', 3)):
        (tmp_path / folder).mkdir()
        scene(index)[0].save(tmp_path / folder / 'x.png')
    pattern = str(tmp_path / '*' / 'x.png')
    run('crop', pattern, '--out', tmp_path / 'crops', '--crop', 'face', '--margin', '0', check_code=0)
    crops = Counter(p.parent.name for p in (tmp_path / 'crops').rglob('*.png'))
    assert crops == {'a': len(scene(1)[1]), 'b': len(scene(3)[1])}
    run('filter', pattern, '--out', tmp_path / 'kept', '--min-label', 'poor', '--crop', 'face', '--margin', '0',
        check_code=0)
    for folder in ('a', 'b'):
        assert (tmp_path / 'kept' / folder / 'x.png').read_bytes() == (tmp_path / folder / 'x.png').read_bytes()


def test_crop_from_saved_scores_writes_the_same_crops(scored, tmp_path):
    root, scores, _ = scored
    run('crop', root, '--out', tmp_path / 'live', '--crop', 'face', '--margin', '0', '--min-label', 'good',
        check_code=1)
    run('crop', '--scores', scores, '--out', tmp_path / 'saved', '--min-label', 'good', check_code=0)
    files = {name: sorted((p.relative_to(tmp_path / name), p.read_bytes()) for p in (tmp_path / name).rglob('*')
                          if p.is_file()) for name in ('live', 'saved')}
    assert files['live'] == files['saved'] and files['live']


def test_visualize_keeps_same_stem_images_apart(tmp_path):
    root = tmp_path / 'frames'
    root.mkdir()
    scene(0)[0].save(root / 'x.png')
    scene(1)[0].convert('RGB').save(root / 'x.jpg', quality=95)
    scene(2)[0].save(root / 'y.png')
    out = tmp_path / 'boxes'
    run('score', root, '--visualize', out, '-q', check_code=0)
    assert sorted(p.name for p in out.iterdir()) == ['x.jpg.png', 'x.png.png', 'y.png']
    assert Image.open(out / 'x.jpg.png').tobytes() != Image.open(out / 'x.png.png').tobytes()


def test_visualize_keeps_the_same_name_under_two_roots_apart(tmp_path):
    for folder, index in (('a', 0), ('b', 1)):
        (tmp_path / folder).mkdir()
        scene(index)[0].save(tmp_path / folder / 'x.png')
    out = tmp_path / 'boxes'
    run('score', tmp_path / 'a', tmp_path / 'b', '--visualize', out, '-q', check_code=0)
    drawn = sorted(str(path.relative_to(out)) for path in out.rglob('*.png'))
    assert len(drawn) == 2 and Image.open(out / drawn[0]).tobytes() != Image.open(out / drawn[1]).tobytes()


# ------------------------------------------------------------------ faults in real processes (issue 20)

FAULTS = r'''
import errno, os, subprocess, sys
_fault, _name = os.environ['FACEQUAL_FAULT'], os.environ['FACEQUAL_FAULT_NAME']
if _fault == 'full-disk':  # the disk fills up 196,608 bytes into copying that file
    _sendfile, _cut = os.sendfile, set()
    def _full(out_fd, in_fd, offset, count):
        if os.readlink(f'/proc/self/fd/{in_fd}').endswith(os.sep + _name):
            if in_fd in _cut:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            _cut.add(in_fd)
            return _sendfile(out_fd, in_fd, offset, min(count, 196608))
        return _sendfile(out_fd, in_fd, offset, count)
    os.sendfile = _full
if _fault == 'race':  # another process writes the destination just before it is taken
    def _late(real):
        def call(src, dst, *args, **kwargs):
            if os.path.basename(dst) == _name and not os.path.exists(dst):
                subprocess.run([sys.executable, '-c', f'open({dst!r}, "wb").write(b"another run")'], check=True)
            return real(src, dst, *args, **kwargs)
        return call
    os.link, os.rename, os.replace = _late(os.link), _late(os.rename), _late(os.replace)
sys.argv[0] = 'imgutils-facequal'
from imgutils_facequal.cli import main
main()
'''


def run_with_fault(fault, name, *args):
    env = dict(os.environ, FACEQUAL_FAULT=fault, FACEQUAL_FAULT_NAME=name)
    return subprocess.run([sys.executable, '-c', FAULTS, *map(str, args)], capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL, env=env)


def big_frames(root, count):
    """Frames large enough that a copy takes several sendfile calls' worth of bytes."""
    import numpy as np
    root.mkdir()
    for index in range(count):
        image = scene(index)[0].convert('RGB').resize((512, 512), Image.NEAREST)
        noise = np.random.default_rng(index).integers(0, 16, (512, 512, 3), dtype=np.uint8)
        Image.fromarray(np.asarray(image) | noise).save(root / f'frame{index:03d}.png')
    return {p.name: p.read_bytes() for p in root.iterdir()}


def test_a_full_disk_leaves_no_partial_file_and_a_rerun_completes(tmp_path):
    root = tmp_path / 'frames'
    originals = big_frames(root, 4)
    assert all(len(data) > 196_608 for data in originals.values())
    out = tmp_path / 'kept'
    first = run_with_fault('full-disk', 'frame001.png', 'filter', root, '--out', out, '--min-label', 'poor',
                           '--crop', 'face', '--margin', '0')
    assert first.returncode == 1, first.stderr[-2000:]
    assert 'frame001.png' in first.stderr and 'No space left on device' in first.stderr
    assert sorted(os.listdir(out)) == ['frame000.png', 'frame002.png', 'frame003.png']  # nothing partial, no temp
    second = run('filter', root, '--out', out, '--min-label', 'poor', '--crop', 'face', '--margin', '0',
                 check_code=0)
    assert '3 were there already' in second.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == originals


def test_a_destination_created_by_another_run_is_never_replaced(tmp_path):
    root = tmp_path / 'frames'
    originals = big_frames(root, 3)
    out = tmp_path / 'kept'
    result = run_with_fault('race', 'frame001.png', 'filter', root, '--out', out, '--min-label', 'poor',
                            '--mode', 'move', '--crop', 'face', '--margin', '0')
    assert result.returncode == 1, result.stderr[-2000:]
    assert 'not overwriting' in result.stderr
    assert (out / 'frame001.png').read_bytes() == b'another run'  # the other run's file
    assert (root / 'frame001.png').read_bytes() == originals['frame001.png']  # and ours, still at home
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != 'frame001.png'} == {
        name: data for name, data in originals.items() if name != 'frame001.png'}


def test_two_filter_runs_moving_into_one_folder_lose_nothing(tmp_path):
    """Two real processes move 300 files each, of the same names, into one folder at once."""
    sources = []
    for run_number in range(2):
        root = tmp_path / f'source{run_number}'
        root.mkdir()
        rows = []
        for index in range(300):
            path = root / f'{index:04d}.png'
            path.write_bytes(f'run {run_number} file {index}'.encode())
            rows.append({'image': str(path), 'face': 0, 'faces': 1, 'width': 8, 'height': 8, 'bbox': [0, 0, 8, 8],
                         'label': 'excellent', 'score': 1.0, 'scores': {'poor': 0.0, 'ok': 0.0, 'good': 0.0,
                                                                        'excellent': 1.0},
                         'quality': 1.0, 'detection_score': 0.9, 'head_bbox': None, 'crop_bbox': [0, 0, 8, 8],
                         'error': None})
        scores = tmp_path / f'scores{run_number}.jsonl'
        scores.write_text(''.join(json.dumps(row) + '\n' for row in rows))
        sources.append(scores)
    out = tmp_path / 'kept'
    logs = [open(tmp_path / f'stderr{number}.txt', 'w') for number in range(2)]
    processes = [subprocess.Popen([SCRIPT, 'filter', '--scores', str(scores), '--out', str(out), '--min-label',
                                   'good', '--mode', 'move', '-q'], stdout=subprocess.DEVNULL, stderr=log,
                                  stdin=subprocess.DEVNULL) for scores, log in zip(sources, logs)]
    codes = [process.wait(timeout=120) for process in processes]
    for log in logs:
        log.close()
    refused = sum(open(log.name).read().count('not overwriting') for log in logs)
    assert refused == 300  # every name was taken by one run, and the other run was told
    everything = [p.read_bytes() for p in tmp_path.rglob('*.png')]
    assert sorted(everything) == sorted(f'run {r} file {i}'.encode() for r in range(2) for i in range(300))
    assert len(os.listdir(out)) == 300
    left = sum(1 for r in range(2) for _ in (tmp_path / f'source{r}').iterdir())
    assert left == 300 and set(codes) <= {0, 1}
