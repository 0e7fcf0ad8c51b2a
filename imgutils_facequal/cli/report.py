"""``imgutils-facequal report``: a static HTML page of saved scores, to look at before filtering."""
import sys

import click

from ..report import DEFAULT_PER_CLASS, write_report
from .common import EXIT_SOME_FAILED, exit_codes, read_saved_scores


@click.command()
@click.argument('scores', type=click.Path(dir_okay=False))
@click.option('--out', '-o', 'out_dir', type=click.Path(file_okay=False), required=True,
              help='Report folder (new, empty, or an earlier report): index.html and thumbs/.')
@click.option('--per-class', type=click.IntRange(min=1), default=DEFAULT_PER_CLASS, show_default=True,
              help='Faces shown per class at most, spread evenly from the best to the worst.')
@click.option('--thumb-size', type=click.IntRange(min=8), default=128, show_default=True,
              help='Thumbnail size in pixels.')
@click.option('--embed', is_flag=True, help='Put the thumbnails in index.html itself (one file) instead of thumbs/.')
@click.option('--title', default=None, help='Page title.')
@click.option('--quiet', '-q', is_flag=True, help='No summary.')
@exit_codes()
def report(scores, out_dir, per_class, thumb_size, embed, title, quiet):
    """Write an HTML report of the rows of `score -o SCORES`: face crops per class, best first; a histogram
    of the quality value; counts; and what each threshold keeps. No model is loaded; the page opens from
    disk, with no server or network.
    """
    rows, recorded = read_saved_scores(scores)
    written = write_report(rows, out_dir, per_class=per_class, thumb_size=thumb_size, embed=embed, title=title,
                           provenance=recorded)
    unreadable = written['unreadable']
    for path, reason in list(unreadable.items())[:20]:
        click.echo(f'failed {path}: {reason}', err=True)
    if not quiet:
        click.echo(f'Wrote {written["page"]}: {written["shown"]} of {written["faces"]} faces shown'
                   + (f'; {len(unreadable)} images could not be read (shown as "image gone")' if unreadable else '')
                   + '.', err=True)
    sys.exit(EXIT_SOME_FAILED if unreadable else 0)
