"""``imgutils-facequal score``: one row per face (or per image), resumable, in JSON Lines, CSV or Parquet."""
import glob
import itertools
import os
import re
import sys
from typing import List, Tuple

import click

from ..curate import output_stems
from ..hf_datasets import HFImages
from ..pipeline import ImageResult, InputImage, find_images, score_images_with, shard_images
from ..store import FORMATS, ScoresWriter, format_for, image_key, make_provenance
from ..store.formats import meta_path, parquet
from ..visualize import VISUALIZATION_FORMATS
from .common import (FiniteFloatRange, Progress, exit_codes, finish, load_detector, print_failure, save_visualization,
                     scoring_options, settings_from)
from .ray_score import score_on_ray


def _read_file_list(source) -> List[Tuple[int, str]]:
    """The ``(line number, path)`` of each path in a --files-from file (``-``: standard input), one a line; blank
    lines and ``#`` lines skipped."""
    if source is None:
        return []
    stream = sys.stdin if source == '-' else open(source, 'r', encoding='utf-8', errors='surrogateescape')
    try:
        return [(number, line.rstrip('\r\n')) for number, line in enumerate(stream, 1)
                if line.strip() and not line.startswith('#')]
    finally:
        if stream is not sys.stdin:
            stream.close()


def _own_outputs(output, visualize) -> list:
    """What this command writes, never read as an input on a rerun: the drawings' folder, the output file and
    its companions (its lock, its ``.meta.json``, a Parquet run's parts)."""
    companions = [output, output + '.lock', meta_path(output), parquet.parts_dir(output)] if output else []
    return companions + ([visualize] if visualize else [])


def _listed_but_missing(source, listed: List[Tuple[int, str]]) -> Tuple[List[str], List[ImageResult]]:
    """The listed paths that exist (or are globs that match), and an error result for each of the others, naming
    the list and the line: one missing file does not stop the run."""
    present, missing, named = [], [], set()
    name = 'standard input' if source == '-' else repr(source)
    for number, path in listed:
        if os.path.lexists(path) or glob.glob(path, recursive=True):
            present.append(path)
        elif path not in named:
            named.add(path)
            missing.append(ImageResult(InputImage(path, os.path.dirname(path) or '.'), error=(
                f'{path!r} (line {number} of {name}) does not exist. Fix the list or the file; relative paths are '
                f'read from the current folder, {os.getcwd()!r}.')))
    return present, missing


def _shard(text):
    if text is None:
        return None
    try:
        index, count = (int(part) for part in text.split('/'))
    except ValueError:
        raise click.BadParameter(f'{text!r}: give I/N, such as 1/4 (the first of four shares).') from None
    if not 1 <= index <= count:
        raise click.BadParameter(f'{text!r}: I runs from 1 to N.')
    return index, count


def _ray_address(text):
    if text is None or text in ('local', 'auto') or '://' in text or re.fullmatch(r'[\w.\-\[\]:]+:\d+', text):
        return text
    # '--ray frames/' reads the folder as the option's value
    raise click.BadParameter(f'{text!r} is not a Ray address (auto, HOST:PORT or ray://HOST:PORT). To score it on '
                             f'a Ray cluster on this machine, put --ray after the paths, or write --ray local {text}.')


@click.command()
@click.argument('paths', nargs=-1)
@click.option('--output', '-o', type=click.Path(), default=None,
              help='Output file; rerunning with the same file resumes it (images that failed are tried again). '
                   'Default: stdout.')
@click.option('--format', 'fmt', type=click.Choice(FORMATS), default=None,
              help='Output format (default: from the output file name, else jsonl). parquet needs the parquet extra.')
@click.option('--per-image', is_flag=True,
              help='One row per image (faces, best, worst and mean quality) instead of one per face.')
@click.option('--files-from', type=click.Path(exists=True, dir_okay=False, allow_dash=True), default=None,
              help='Also take the inputs from this file, one path a line (- for standard input); a listed path '
                   'that does not exist gets an error row naming its line, and the run goes on.')
@click.option('--shard', callback=lambda _, __, value: _shard(value), default=None, metavar='I/N',
              help='Score only the I-th of N stable shares of the inputs (1 <= I <= N), for N jobs side by side.')
@click.option('--visualize', type=click.Path(file_okay=False), default=None,
              help='Also write each image with its faces boxed and labelled to this folder.')
@click.option('--visualize-format', 'visualize_format', type=click.Choice(list(VISUALIZATION_FORMATS)),
              default='png', show_default=True,
              help='With --visualize: png (lossless, large), jpeg or webp (a tenth of the size, to share).')
@click.option('--visualize-max-side', 'visualize_max_side', type=click.IntRange(min=16), default=None, metavar='PX',
              help="With --visualize: scale each drawing down to at most PX pixels on its long side "
                   "(default: the image's size).")
@click.option('--log-interval', type=FiniteFloatRange(min=1), default=30.0, show_default=True,
              help='With no terminal (nohup, Slurm), a progress line on stderr every this many seconds.')
@click.option('--ray', 'ray_address', is_flag=False, flag_value='local', default=None, metavar='[auto|ADDRESS]',
              callback=lambda _, __, value: _ray_address(value),
              help='Score on Ray Data: alone, a cluster on this machine (or RAY_ADDRESS); auto or an address, that '
                   'cluster. Writes Parquet shards to the --output folder; a rerun resumes. Needs the ray extra.')
@click.option('--actors', type=click.IntRange(min=1), default=1, show_default=True,
              help='With --ray: actors, each with its own model and an equal share of the CPUs.')
@click.option('--gpus-per-actor', type=FiniteFloatRange(min=0), default=0.0, show_default=True,
              help='With --ray: GPUs per actor (0.5: two actors share a card).')
@click.option('--hf-dataset', default=None, metavar='PATH_OR_NAME',
              help='Score the images of a Hugging Face dataset instead of PATHS: a folder written by save_to_disk, '
                   'a folder of Parquet files in the hub layout, or a hub name in the Hugging Face cache. Rows are '
                   'named hf://DATASET/SPLIT/ROW. Needs the datasets extra.')
@click.option('--split', default='train', show_default=True, help='With --hf-dataset: the split.')
@click.option('--image-column', default='image', show_default=True, help='With --hf-dataset: the images\' column.')
@scoring_options
@exit_codes()
def score(paths, output, fmt, per_image, files_from, shard, visualize, visualize_format, visualize_max_side,
          log_interval, quiet, ray_address, actors, gpus_per_actor, hf_dataset, split, image_column, **kwargs):
    """Score every face of every image: one row per face, one per image without a face, one per unreadable file.

    PATHS are files, folders (searched recursively for images) and globs; or, with
    --hf-dataset, a Hugging Face dataset's images (see its docs page). An output file
    gets a record of what produced it (<output>.meta.json); a rerun with other settings is
    refused. Exit codes: 0 all scored, 1 some files failed (see their error rows), 2 a usage
    problem, 3 a model or the output cannot be had, 130 interrupted (rerun to resume). With
    -q, lines about failed files still go to stderr.
    """
    roots = list(paths) + ([files_from] if files_from not in (None, '-') else [])  # recorded in the provenance
    given, listed = list(paths), _read_file_list(files_from)
    paths = given + [path for _, path in listed]
    if hf_dataset is not None and (paths or ray_address is not None or shard or visualize):
        raise click.UsageError('--hf-dataset scores the dataset\'s images: it does not go with PATHS, --files-from, '
                               '--ray, --shard or --visualize.')
    if not paths and hf_dataset is None:
        raise click.UsageError('Give PATHS, or --files-from, or --hf-dataset.')
    settings = settings_from(kwargs)
    batch_size, workers = kwargs.pop('batch_size'), kwargs.pop('workers')
    if ray_address is not None:
        if per_image or shard or visualize or fmt not in (None, 'parquet'):
            raise click.UsageError('--ray writes Parquet rows per face; it does not go with --per-image, --shard, '
                                   '--visualize or --format jsonl/csv.')
        return score_on_ray(paths, output, ray_address, actors, gpus_per_actor, quiet, log_interval, settings,
                            batch_size, workers)
    fmt = format_for(output, fmt)
    dataset = HFImages(hf_dataset, split, image_column) if hf_dataset is not None else None
    if dataset is not None:
        images, missing = dataset.ids(), []
    else:
        present, missing = _listed_but_missing(files_from, listed)
        images = find_images(given + present, exclude=_own_outputs(output, visualize))
    if shard is not None:
        images = shard_images(images, *shard)
        missing = [result for result in missing if shard_images([result.image], *shard)]
    if not images and not missing:
        click.echo(f'Warning: no images found in {", ".join(map(repr, paths or [hf_dataset]))}'
                   + (f' for shard {shard[0]}/{shard[1]}' if shard else '')
                   + ' (image files end in .png, .jpg, .webp...).', err=True)
    out = ScoresWriter(output, fmt)  # checked and locked before the model loads
    try:
        faces = load_detector(settings)  # the model loads before any image, so one that cannot be had fails fast
        out.start(faces.classifier.classes, make_provenance(faces, per_image, batch_size, workers, os.getcwd(),
                                                            roots))
        todo = [item for item in images if not out.is_done(item.path)]
        progress = Progress(len(missing) + len(todo), quiet, done_before=len(images) - len(todo),
                            classes=faces.classifier.classes, log_interval=log_interval,
                            bar=not (output is None and sys.stdout.isatty()), settings=settings,
                            classifier=faces.classifier)
        progress.retried = len(out.retried & {image_key(item.path) for item in todo})
        interrupted = False
        try:
            stems = output_stems(images) if visualize else {}  # of every input: the same names on a rerun
            scored = score_images_with(faces, dataset.with_data(todo) if dataset is not None else todo,
                                       batch_size=batch_size, workers=workers, keep_images=bool(visualize))
            for result in itertools.chain(missing, scored):
                out.write(result)
                if result.error is not None:
                    print_failure(result, progress)
                elif visualize:
                    save_visualization(result, visualize, stems.get(result.image.path), visualize_format,
                                       visualize_max_side)
                progress.update(result)
        except KeyboardInterrupt:
            interrupted = True
        out.close(finished=not interrupted)
    except BaseException:
        out.close(finished=False)
        raise
    finish(progress, interrupted)
