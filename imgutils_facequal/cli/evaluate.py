"""``imgutils-facequal eval-crops``: the model card's crop-robustness analysis."""

import click

from ..backends import BACKENDS, DEFAULT_BACKEND
from ..errors import ImageLoadError, install_hint
from ..evaluate import (DEFAULT_SETTINGS, can_plot, evaluate_crop_robustness, parse_settings, read_hf_dataset,
                        read_labelled_folder)
from ..models import DEFAULT_MODEL
from .common import EXIT_SOME_FAILED, exit_codes, fail


@click.command(name='eval-crops')
@click.option('--images', 'images_dir', type=click.Path(file_okay=False, exists=True), default=None,
              help='Folder of labelled images (with --labels).')
@click.option('--labels', 'labels_path', type=click.Path(dir_okay=False, exists=True), default=None,
              help='CSV or JSON Lines file: image, label and head box per row (with --images).')
@click.option('--dataset', default=None, help='A Hugging Face data set instead: hub name or local folder.')
@click.option('--split', default='test', show_default=True, help='Split of --dataset.')
@click.option('--dataset-revision', default=None, help='Hub revision of --dataset.')
@click.option('--model', 'models', multiple=True, default=(DEFAULT_MODEL,), show_default=True,
              help='Model to evaluate; repeat for several (scored on identical crops).')
@click.option('--settings', default=None,
              help='Crop settings, e.g. "full,loose_2x,head_only,tight=0.1" (default: the card\'s seven).')
@click.option('--seed', type=int, default=0, show_default=True, help='Seed of the per-image crop draws.')
@click.option('--limit', type=click.IntRange(min=1), default=None, help='Evaluate only the first N images.')
@click.option('--image-column', default='image', show_default=True)
@click.option('--label-column', default='label', show_default=True)
@click.option('--head-column', default='head_bbox', show_default=True,
              help='Column holding [x0, y0, x1, y1] head boxes.')
@click.option('--head-columns', default='head_x0,head_y0,head_x1,head_y1', show_default=True,
              help='Or four columns holding the head box.')
@click.option('--head-detector', default='head', show_default=True,
              help='Detector giving head boxes to images that have none.')
@click.option('--backend', type=click.Choice(BACKENDS), default=DEFAULT_BACKEND, show_default=True)
@click.option('--device', default=None)
@click.option('--batch-size', type=click.IntRange(min=1), default=None,
              help='Crops per forward pass (default: 2 on CPU, 32 on GPU).')
@click.option('--out', '-o', '--output', 'out_dir', type=click.Path(file_okay=False), default=None,
              help='Write report.md, report.json and macro_f1.png here.')
@click.option('--quiet', '-q', is_flag=True, help='No progress bar.')
@exit_codes(OSError)
def eval_crops(images_dir, labels_path, dataset, split, dataset_revision, models, settings, seed, limit,
               image_column, label_column, head_column, head_columns, head_detector, backend, device, batch_size,
               out_dir, quiet):
    """The model card's crop-robustness analysis: macro-F1 from full frames to head-only crops.

    Prints the card's table (markdown); --out also writes every figure as JSON and a plot.
    """
    if (dataset is None) == (images_dir is None or labels_path is None):
        raise click.UsageError('Give either --images and --labels, or --dataset.')
    try:
        chosen = parse_settings(settings) if settings else list(DEFAULT_SETTINGS)
    except ValueError as err:
        raise click.UsageError(str(err))
    columns = [name.strip() for name in head_columns.split(',')] if head_columns else None
    if dataset is not None:
        data = read_hf_dataset(dataset, split=split, image_column=image_column, label_column=label_column,
                               head_column=head_column, head_columns=columns, revision=dataset_revision)
    else:
        data = read_labelled_folder(images_dir, labels_path, image_column=image_column,
                                    label_column=label_column, head_column=head_column, head_columns=columns)
    try:
        report = evaluate_crop_robustness(data, models=models, settings=chosen, seed=seed, batch_size=batch_size,
                                          limit=limit, backend=backend, device=device, head_detector=head_detector,
                                          progress=False if quiet else None)
    except ImageLoadError as err:  # nothing could be evaluated: the inputs failed
        fail(str(err), EXIT_SOME_FAILED)
    click.echo(report.to_markdown())
    if out_dir:
        for path in report.save(out_dir).values():
            click.echo(f'wrote {path}', err=True)
        if not can_plot():
            click.echo(f'not drawn: macro_f1.png needs matplotlib: {install_hint("eval")}', err=True)
