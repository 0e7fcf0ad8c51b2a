"""``imgutils-facequal score``: one row per face, resumable."""
import os
import sys

import click

from ..pipeline import find_images
from .common import Progress, exit_codes, finish, run_pipeline, save_visualization, scoring, scoring_options
from .records import ResultWriter, completed_images


@click.command()
@click.argument('paths', nargs=-1, required=True)
@click.option('--output', '-o', type=click.Path(), default=None,
              help='Output file; rerunning with the same file skips images already in it. Default: stdout.')
@click.option('--format', 'fmt', type=click.Choice(['jsonl', 'csv']), default=None,
              help='Output format (default: from the output file name, else jsonl).')
@click.option('--visualize', type=click.Path(file_okay=False), default=None,
              help='Also write each image with its faces boxed and labelled to this folder.')
@click.option('--ray', 'ray_address', is_flag=False, flag_value='local', default=None, metavar='[auto|ADDRESS]',
              help='Score on Ray Data: alone, a cluster on this machine (or RAY_ADDRESS); auto or an address, that '
                   'cluster. Writes Parquet shards to the --output folder; a rerun resumes. Needs the ray extra.')
@click.option('--actors', type=click.IntRange(min=1), default=1, show_default=True,
              help='With --ray: actors, each with its own model and an equal share of the CPUs.')
@click.option('--gpus-per-actor', type=click.FloatRange(min=0), default=0.0, show_default=True,
              help='With --ray: GPUs per actor (0.5: two actors share a card).')
@scoring_options
@exit_codes()
def score(paths, output, fmt, visualize, quiet, ray_address, actors, gpus_per_actor, **kwargs):
    """Score every face of every image: one row per face, one per image without a face.

    PATHS are files, folders (searched recursively for images) and globs.
    """
    if ray_address is not None:
        if visualize or fmt not in (None, 'parquet'):
            raise click.UsageError('--ray writes Parquet rows per face; it does not go with --visualize or '
                                   '--format jsonl/csv.')
        from .ray_score import score_on_ray
        return score_on_ray(paths, output, ray_address, actors, gpus_per_actor, quiet, None, kwargs)
    if output and os.path.isdir(output):
        raise click.UsageError(f'{output!r} is a folder: give a file name as --output (a folder is for --ray).')
    fmt = fmt or ('csv' if output and output.lower().endswith('.csv') else 'jsonl')
    images = find_images(paths)
    done = completed_images(output, fmt) if output else set()
    todo = [item for item in images if item.path not in done]
    options = scoring(kwargs)  # the model loads before any image, so one that cannot be had fails fast
    classes = options['faces'].classifier.classes
    progress = Progress(len(todo), quiet, done_before=len(images) - len(todo))
    stream = open(output, 'a', encoding='utf-8', newline='') if output else sys.stdout
    interrupted = False
    try:
        writer = ResultWriter(stream, fmt, classes, write_header=not output or stream.tell() == 0)
        for result in run_pipeline(todo, options, keep_images=bool(visualize)):
            writer.write(result)
            if visualize and result.error is None:
                save_visualization(result, visualize)
            progress.update(result)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if output:
            stream.close()
    finish(progress, interrupted)
