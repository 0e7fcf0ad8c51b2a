"""Near-duplicates: grouping hashes without all pairs, the hash ``score`` records, and ``filter --dedup``
keeping the best frame of each shot."""
import json
import random
import sys

import pytest
from hypothesis import given, settings, strategies as st

from imgutils_facequal import kept_images, scored_images
from imgutils_facequal.curate import DEFAULT_DEDUP_DISTANCE, Thresholds, duplicate_groups, select_images, table_of
from imgutils_facequal.curate.dedup import hash_distance
from imgutils_facequal.pipeline import _imagehash, perceptual_hash
from imgutils_facequal.store import read_scores
from tests.support.cli import run
from tests.support.fake_hub import CLASS_COLOURS, cell_box, solid_image


def all_pairs_groups(hashes, distance):
    """The groups by comparing every pair (what `duplicate_groups` must equal)."""
    parent = list(range(len(hashes)))

    def root(index):
        while parent[index] != index:
            index = parent[index]
        return index
    for first in range(len(hashes)):
        for second in range(first + 1, len(hashes)):
            if hashes[first] and hashes[second] and hash_distance(hashes[first], hashes[second]) <= distance:
                parent[root(first)] = root(second)
    found = {}
    for index, value in enumerate(hashes):
        if value:
            found.setdefault(root(index), []).append(index)
    return sorted(group for group in found.values() if len(group) > 1)


@st.composite
def clustered(draw):
    bases = draw(st.lists(st.integers(0, 2 ** 64 - 1), min_size=1, max_size=4))
    hashes = []
    for _ in range(draw(st.integers(0, 30))):
        if draw(st.booleans()) and draw(st.booleans()) and draw(st.booleans()):
            hashes.append(None)
            continue
        value = draw(st.sampled_from(bases))
        for bit in draw(st.lists(st.integers(0, 63), max_size=12)):
            value ^= 1 << bit
        hashes.append(f'{value:016x}')
    return hashes, draw(st.integers(0, 16))


@settings(max_examples=300, deadline=None)
@given(clustered())
def test_duplicate_groups_are_those_of_all_pairs(case):
    hashes, distance = case
    groups = duplicate_groups(hashes, distance)
    assert sorted(groups) == all_pairs_groups(hashes, distance)
    assert all(group == sorted(group) for group in groups) and groups == sorted(groups)


def test_duplicate_groups_of_thousands_are_those_of_all_pairs():
    """Enough hashes that joins found in one combination of blocks are merged only later."""
    import numpy as np
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from benchmarks.dedup import clustered_hashes
    hashes, _ = clustered_hashes(3000, seed=7, max_shot=30, step_bits=4)
    hashes[::97] = [None] * len(hashes[::97])
    for distance in (3, 6, 9):
        present = [index for index, value in enumerate(hashes) if value]
        values = np.array([int(hashes[index], 16) for index in present], dtype=np.uint64)
        ones = np.array([bin(byte).count('1') for byte in range(256)], dtype=np.uint8)
        apart = ones[(values[:, None] ^ values[None, :]).view(np.uint8)].reshape(len(present), len(present), 8).sum(2)
        first, second = np.nonzero(apart <= distance)
        _, labels = connected_components(coo_matrix((np.ones(first.size), (first, second)),
                                                    shape=(len(present),) * 2), directed=False)
        want = {}
        for index, label in zip(present, labels):
            want.setdefault(label, []).append(index)
        assert sorted(duplicate_groups(hashes, distance)) == sorted(g for g in want.values() if len(g) > 1)


def test_duplicate_groups_join_a_chain_and_leave_out_images_without_a_hash():
    chain = ['0000000000000000', '000000000000000f', '00000000000000ff', None, 'ffffffffffffffff']
    assert duplicate_groups(chain, 4) == [[0, 1, 2]]  # 0 and 2 are 8 apart, joined through 1
    assert duplicate_groups(chain, 3) == []
    assert duplicate_groups(['00000000000000ff'] * 3, 0) == [[0, 1, 2]]


def test_duplicate_groups_refuse_what_is_no_hash():
    with pytest.raises(ValueError, match='hash 1: .*16 hex digits'):
        duplicate_groups(['0000000000000000', 'abc'], 4)
    with pytest.raises(ValueError, match='distance must be'):
        duplicate_groups(['0000000000000000'], 64)


def face_frame(background_seed, shift, face_colour, noise_seed):
    """A 256 x 256 frame of one shot: a dark textured background (no detector fires on it) and two faces,
    the whole panned by ``shift`` pixels, with noise."""
    import numpy as np
    from PIL import ImageDraw
    rng = random.Random(background_seed)
    canvas = solid_image((0, 0, 0), size=(300, 300))
    draw = ImageDraw.Draw(canvas)
    for _ in range(14):
        x, y, w, h = rng.randrange(300), rng.randrange(300), rng.randrange(30, 150), rng.randrange(30, 150)
        draw.ellipse((x, y, x + w, y + h), fill=tuple(rng.randrange(10, 90) for _ in range(3)))
    for (column, row), colour in (((1, 1), face_colour), ((5, 4), CLASS_COLOURS['poor'])):
        x0, y0, x1, y1 = cell_box(column, row, 8, (256, 256))
        draw.rectangle((x0 + 20, y0 + 20, x1 + 19, y1 + 19), fill=colour)
    frame = np.asarray(canvas.crop((20 + shift, 20, 276 + shift, 276))).astype('float32')
    frame += np.random.default_rng(noise_seed).normal(0, 3, frame.shape)
    from PIL import Image
    return Image.fromarray(frame.clip(0, 255).astype('uint8'))


def write_shots(root, shots=4, frames=10):
    """``shots`` shots of ``frames`` frames; in each shot one frame (a different one per shot) has an
    ``excellent`` face where the others have an ``ok`` one. ``{shot: best frame's path}``."""
    root.mkdir(parents=True)
    best = {}
    for shot in range(shots):
        for frame in range(frames):
            top = frame == (3 * shot + 2) % frames
            colour = CLASS_COLOURS['excellent' if top else 'ok']
            path = root / f'shot{shot}_{frame:02d}.png'
            face_frame(1000 + shot, frame, colour, shot * 100 + frame).save(path)
            if top:
                best[shot] = str(path)
    return best


needs_imagehash = pytest.mark.extras  # the dedup extra


@needs_imagehash
def test_filter_dedup_keeps_the_best_frame_of_each_shot(tmp_path):
    best = write_shots(tmp_path / 'frames')
    scores = tmp_path / 'scores.jsonl'
    run('score', tmp_path / 'frames', '-o', scores, '--crop', 'face', '--margin', '0', '-q')
    rows = read_scores(str(scores)).rows
    assert all(len(row['phash']) == 16 for row in rows)
    results = scored_images(rows)
    before = kept_images(rows, min_label='ok')
    assert len(before) == 40

    # the best frame's face is another colour, 8 bits from its neighbours' hashes: distance 8 joins each shot
    dry = run('filter', '--scores', scores, '--out', tmp_path / 'train', '--min-label', 'ok', '--dedup-distance', '8',
              '--rejected', tmp_path / 'dupes')
    kept = sorted(str(path) for path in (tmp_path / 'train').iterdir())
    assert [path.rsplit('/', 1)[-1] for path in kept] == sorted(path.rsplit('/', 1)[-1] for path in best.values())
    assert len(list((tmp_path / 'dupes').iterdir())) == 36
    assert '36 near-duplicates of a better image dropped' in dry.stderr
    selection = select_images(results, Thresholds(min_label='ok', dedup_distance=8))
    assert len(selection.groups) == 4 and all(len(group) == 10 for group in selection.groups)
    assert {results[group[0]].image.path for group in selection.groups} == set(best.values())  # kept one first

    # scoring PATHS: every image is scored before one is placed
    run('filter', tmp_path / 'frames', '--out', tmp_path / 'direct', '--min-label', 'ok', '--dedup-distance', '8',
        '--crop', 'face', '--margin', '0', '-q', check_code=0)
    assert sorted(path.name for path in (tmp_path / 'direct').iterdir()) == [path.rsplit('/', 1)[-1] for path in kept]

    table = run('filter', '--scores', scores, '--thresholds', '--dedup-distance', '8').stdout
    assert 'near-duplicates (--dedup-distance 8): 4 groups, 36 images' in table
    assert 'after dedup' in table
    rows = {row.value: row for row in table_of(results, thresholds=Thresholds(dedup_distance=8)).rows}
    assert (rows['ok'].images, rows['ok'].after_dedup) == (40, 4)
    assert (rows['excellent'].images, rows['excellent'].after_dedup) == (4, 4)  # the best frames: one a group


@needs_imagehash
def test_filter_dedup_hashes_older_scores_from_their_files(tmp_path):
    write_shots(tmp_path / 'frames', shots=2, frames=3)
    scores = tmp_path / 'scores.jsonl'
    run('score', tmp_path / 'frames', '-o', scores, '--crop', 'face', '--margin', '0', '-q')
    old = tmp_path / 'old.jsonl'
    lines = [json.loads(line) for line in scores.read_text().splitlines()]
    old.write_text(''.join(json.dumps({k: v for k, v in row.items() if k != 'phash'}) + '\n' for row in lines))
    result = run('filter', '--scores', old, '--out', tmp_path / 'train', '--min-label', 'ok', '--dedup')
    assert 'Computing the perceptual hashes of 6 images from their files' in result.stderr
    assert len(list((tmp_path / 'train').iterdir())) == 2


@needs_imagehash
def test_score_records_the_hash_in_every_format(tmp_path):
    write_shots(tmp_path / 'frames', shots=1, frames=2)
    found = {}
    for ext in ('jsonl', 'csv', 'parquet'):
        out = tmp_path / f'scores.{ext}'
        run('score', tmp_path / 'frames', '-o', out, '--crop', 'face', '--margin', '0', '-q')
        found[ext] = {row['image']: row['phash'] for row in read_scores(str(out)).rows}
    assert found['jsonl'] == found['csv'] == found['parquet']
    assert all(len(value) == 16 for value in found['jsonl'].values())


@needs_imagehash
def test_without_imagehash_no_hash_is_recorded(monkeypatch):
    image = solid_image((10, 200, 30), size=(64, 64))
    assert len(perceptual_hash(image)) == 16
    monkeypatch.setitem(sys.modules, 'imagehash', None)  # as if the dedup extra were not installed
    _imagehash.cache_clear()
    try:
        assert perceptual_hash(image) is None
    finally:
        monkeypatch.undo()
        _imagehash.cache_clear()


@needs_imagehash
def test_default_distance_groups_frames_of_a_shot_and_not_different_shots():
    import imagehash
    from benchmarks.dedup import shot_frames
    shots = [[str(imagehash.phash(frame)) for frame in shot_frames(seed, 6)] for seed in range(12)]
    groups = duplicate_groups([value for shot in shots for value in shot], DEFAULT_DEDUP_DISTANCE)
    assert all(len({index // 6 for index in group}) == 1 for group in groups)  # never two shots in one group
    whole = sum(1 for group in groups if len(group) == 6)
    assert whole >= 10, groups


def test_a_csv_of_an_older_header_is_rewritten_when_resumed(tmp_path):
    """A CSV written before the phash column: resuming it rewrites it with this header instead of
    appending rows of one more column (which made the file unreadable)."""
    import csv
    frames = tmp_path / 'frames'
    write_shots(frames, shots=1, frames=3)
    later = tmp_path / 'later.png'
    (frames / 'shot0_02.png').rename(later)
    scores = tmp_path / 'scores.csv'
    run('score', frames, '-o', scores, '--crop', 'face', '--margin', '0', '-q')
    with open(scores, newline='', encoding='utf-8') as file:
        records = list(csv.reader(file))
    drop = records[0].index('phash')
    with open(scores, 'w', newline='', encoding='utf-8') as file:
        csv.writer(file, lineterminator='\r\n').writerows([r[:drop] + r[drop + 1:] for r in records])
    later.rename(frames / 'shot0_02.png')
    run('score', frames, '-o', scores, '--crop', 'face', '--margin', '0', '-q')
    rows = read_scores(str(scores)).rows
    assert sorted({row['image'].rsplit('/', 1)[-1] for row in rows}) == ['shot0_00.png', 'shot0_01.png',
                                                                          'shot0_02.png']
    assert scores.read_text(encoding='utf-8').splitlines()[0].split(',')[5] == 'phash'


def test_filter_dedup_without_hashes_or_imagehash_says_what_to_install(tmp_path, monkeypatch):
    write_shots(tmp_path / 'frames', shots=1, frames=2)
    scores = tmp_path / 'scores.jsonl'
    run('score', tmp_path / 'frames', '-o', scores, '--crop', 'face', '--margin', '0', '-q')
    old = tmp_path / 'old.jsonl'
    old.write_text(''.join(json.dumps({k: v for k, v in json.loads(line).items() if k != 'phash'}) + '\n'
                           for line in scores.read_text().splitlines()))
    monkeypatch.setitem(sys.modules, 'imagehash', None)  # as if the dedup extra were not installed
    result = run('filter', '--scores', old, '--out', tmp_path / 'train', '--min-label', 'ok', '--dedup',
                 check_code=3)
    assert "the scores hold none for 2 images" in result.stderr
    assert "pip install 'imgutils-facequal[dedup]'" in result.stderr
    assert not (tmp_path / 'train').exists()
