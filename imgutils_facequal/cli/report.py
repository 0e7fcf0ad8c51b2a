"""``imgutils-facequal report``: a static HTML page of saved scores, to look at before filtering."""
import sys

import click

from ..curate.dedup import DEFAULT_DEDUP_DISTANCE, HASH_BITS
from ..report import DEFAULT_PER_CLASS, write_report
from .common import EXIT_SOME_FAILED, EXIT_USAGE, exit_codes, fail, plural, read_saved_scores


@click.command()
@click.argument('scores', nargs=-1, required=True)
@click.option('--out', '-o', '--output', 'out_dir', type=click.Path(file_okay=False), required=True,
              help='Report folder (new, empty, or an earlier report): index.html and thumbs/.')
@click.option('--per-class', type=click.IntRange(min=1), default=DEFAULT_PER_CLASS, show_default=True,
              help='Faces shown per class at most, spread evenly from the best to the worst.')
@click.option('--thumb-size', type=click.IntRange(min=8), default=128, show_default=True,
              help='Thumbnail size in pixels.')
@click.option('--embed', is_flag=True, help='Put the thumbnails in index.html itself (one file) instead of thumbs/.')
@click.option('--title', default=None, help='Page title.')
@click.option('--dedup-distance', type=click.IntRange(0, HASH_BITS - 1), default=DEFAULT_DEDUP_DISTANCE,
              show_default=True, help='Images whose perceptual hashes lie within this many bits are near-duplicates: '
              'the page shows the groups and can keep the best image of each.')
@click.option('--quiet', '-q', is_flag=True, help='No summary.')
@exit_codes()
def report(scores, out_dir, per_class, thumb_size, embed, title, dedup_distance, quiet):
    """Write an HTML report of saved scores: face crops per class, best first; a histogram of the quality
    value; counts; what each threshold keeps; groups of near-duplicates. It is also where to decide: set the
    thresholds and face filters, click faces to keep or reject their images, and save decisions.json for
    `filter --decisions`. SCORES are outputs of `score -o`, globs, or folders of shards (score --shard,
    score --ray); each image counts once. No model is loaded; the page opens from disk, with no server or
    network.
    """
    saved = read_saved_scores(scores)
    if saved.per_image:
        fail(f'{", ".join(saved.files)} holds one row per image (score --per-image), with no faces to show. Score '
             f'again without --per-image.', EXIT_USAGE)
    written = write_report(saved.rows, out_dir, per_class=per_class, thumb_size=thumb_size, embed=embed, title=title,
                           provenance=saved.provenance, dedup_distance=dedup_distance)
    unreadable = written['unreadable']
    for path, reason in list(unreadable.items())[:20]:
        click.echo(f'failed {path}: {reason}', err=True)
    if not quiet:
        click.echo(f'Wrote {written["page"]}: {written["shown"]} of {plural(written["faces"], "face")} shown'
                   + (f'; {plural(len(unreadable), "image")} could not be read (shown as "image gone")'
                      if unreadable else '')
                   + '.', err=True)
    sys.exit(EXIT_SOME_FAILED if unreadable else 0)
