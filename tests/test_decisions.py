"""decisions.json: thresholds and overrides saved from the report, applied by ``filter --decisions``;
the face filters of `Thresholds`."""
import json

import pytest

from imgutils_facequal import scored_images
from imgutils_facequal.curate import (DecisionsError, Thresholds, apply_decisions, face_size, image_passes,
                                      kept_images, make_decisions, read_decisions, scores_fingerprint, table_of,
                                      write_decisions)
from imgutils_facequal.store import read_scores
from tests.support.cli import run, write_scenes



@pytest.fixture
def scored(tmp_path):
    """Eight scenes (two or three faces each: 32 x 32 face boxes, bare faces in odd scenes) and a broken file."""
    root = write_scenes(tmp_path / 'frames', 8)
    (root / 'broken.png').write_bytes(b'no image')
    scores = tmp_path / 'scores.jsonl'
    run('score', root, '-o', scores, '--crop', 'face', '--margin', '0', '-q', check_code=1)
    return root, scores


def test_face_size_is_the_geometric_mean_of_the_box():
    assert face_size((0, 0, 8, 32)) == 16.0
    assert face_size({'bbox': [10, 10, 20, 30]}) == pytest.approx(200 ** 0.5)
    assert face_size((5, 5, 5, 9)) == 0.0


def test_thresholds_round_trip_and_refuse_unknown_fields():
    chosen = Thresholds(min_label='good', min_face_size=24, max_faces=2, min_detection_score=0.5, dedup_distance=6)
    assert Thresholds.from_dict(json.loads(json.dumps(chosen.to_dict()))) == chosen
    with pytest.raises(ValueError, match="unknown threshold 'min_score'"):
        Thresholds.from_dict({'min_score': 0.5})
    with pytest.raises(ValueError, match='max_faces must be at least 1'):
        Thresholds(max_faces=0)
    with pytest.raises(TypeError, match='min_label='):
        Thresholds(min_quality='good')


def test_face_filters_decide_which_faces_count(scored):
    _, scores = scored
    rows = read_scores(str(scores)).rows
    results = [result for result in scored_images(rows) if result.error is None]
    sizes = {round(face_size(face)) for result in results for face in result.faces}
    assert sizes == {32}  # every face box is one 32 px cell of the face grid
    assert kept_images(rows, min_face_size=32) == [r.image.path for r in results]
    assert kept_images(rows, min_face_size=33) == []
    counts = {r.image.path: len(r.faces) for r in results}
    assert kept_images(rows, max_faces=2) == [path for path, count in counts.items() if count <= 2]
    assert 0 < len(kept_images(rows, max_faces=2)) < len(results)
    # keyword arguments and a Thresholds agree
    assert kept_images(rows, thresholds=Thresholds(max_faces=2, min_label='ok')) == kept_images(
        rows, min_label='ok', max_faces=2)
    for result in results:
        assert image_passes(result.faces, 'ok', max_faces=2) == image_passes(
            result.faces, thresholds=Thresholds('ok', max_faces=2))
    with pytest.raises(ValueError, match='not both'):
        kept_images(rows, min_label='ok', thresholds=Thresholds())
    table = table_of(scored_images(rows), thresholds=Thresholds(max_faces=2, min_face_size=33))
    assert table.removed == {'min_face_size': len(results), 'max_faces': len(results) - len(kept_images(
        rows, max_faces=2)), 'all': len(results)}
    assert '--max-faces 2 removes' in table.to_text() and '--min-face-size 33 removes 8 images' in table.to_text()


def test_filter_with_decisions_applies_thresholds_then_overrides(scored, tmp_path):
    root, scores = scored
    rows = read_scores(str(scores)).rows
    results = scored_images(rows)
    by_threshold = kept_images(rows, min_label='good')
    assert 0 < len(by_threshold) < 8
    dropped = next(r for r in results if r.error is None and r.image.path not in by_threshold)
    unkept = by_threshold[0]
    broken = next(r for r in results if r.error is not None)
    stored = {r.image.path: r.image.path for r in results}  # POSIX: stored paths are the paths
    decisions = make_decisions(results, Thresholds(min_label='good'),
                               {stored[dropped.image.path]: 'keep', stored[unkept]: 'reject',
                                stored[broken.image.path]: 'keep'})
    path = tmp_path / 'decisions.json'
    write_decisions(str(path), decisions)
    saved = json.loads(path.read_text())
    assert saved['kind'] == 'imgutils-facequal decisions' and saved['version'] == 1
    assert saved['scores'] == {'fingerprint': scores_fingerprint(rows), 'images': 9}

    want = sorted(set(by_threshold) - {unkept} | {dropped.image.path})
    assert sorted(apply_decisions(results, read_decisions(str(path)))) == want  # never the broken file
    run('filter', '--scores', scores, '--decisions', path, '--out', tmp_path / 'train')
    assert sorted(p.name for p in (tmp_path / 'train').iterdir() if p.suffix == '.png') == sorted(
        p.rsplit('/', 1)[-1] for p in want)

    refused = run('filter', '--scores', scores, '--decisions', path, '--min-label', 'ok', '--out', tmp_path / 'x',
                  check_code=2)
    assert 'holds the thresholds chosen in the report; drop --min-label' in refused.stderr


def test_decisions_from_other_scores_are_refused(scored, tmp_path):
    root, scores = scored
    results = scored_images(read_scores(str(scores)).rows)
    path = tmp_path / 'decisions.json'
    write_decisions(str(path), make_decisions(results[:-1], Thresholds(min_label='ok')))
    result = run('filter', '--scores', scores, '--decisions', path, '--out', tmp_path / 'train', check_code=2)
    assert f'{path} was made from other scores than {scores}' in result.stderr
    assert not (tmp_path / 'train').exists()


@pytest.mark.parametrize('content, field', [
    ('not json', 'not JSON'),
    ('{"kind": "other"}', '"kind"'),
    ('{"kind": "imgutils-facequal decisions", "version": 2}', 'version 2'),
    ('{"kind": "imgutils-facequal decisions", "version": 1, "scores": {}}', '"scores"'),
    ('{"kind": "imgutils-facequal decisions", "version": 1, "scores": {"fingerprint": "x", "images": 1}, '
     '"thresholds": {"min_lable": "good"}}', '"thresholds": unknown threshold \'min_lable\''),
    ('{"kind": "imgutils-facequal decisions", "version": 1, "scores": {"fingerprint": "x", "images": 1}, '
     '"overrides": {"a.png": "maybe"}}', '"overrides"[\'a.png\'] must be "keep" or "reject"'),
])
def test_a_malformed_decisions_file_names_the_file_and_field(tmp_path, content, field):
    path = tmp_path / 'decisions.json'
    path.write_text(content)
    with pytest.raises(DecisionsError) as caught:
        read_decisions(str(path))
    assert str(path) in str(caught.value) and field in str(caught.value)
