"""``imgutils-facequal models``, ``download``, ``plugins`` and ``export``."""
import json
import sys

import click

from ..errors import FaceQualityError
from ..export import export_onnx
from ..graphs.check import CHECK_TOLERANCE
from ..models import DEFAULT_MODEL
from ..plugins import list_detectors, list_plugins, list_taggers
from .common import EXIT_OK, EXIT_UNAVAILABLE, exit_codes
from .status import download_detectors, download_model, model_status


@click.command()
@click.option('--json', 'as_json', is_flag=True, help='Machine-readable output.')
@exit_codes()
def models(as_json):
    """Known models, where they resolve, and whether each is in the local cache."""
    rows = model_status()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f'{row["name"]}{"  (default)" if row["default"] else ""}')
        click.echo(f'  repo:   {row["repo_id"]}')
        click.echo(f'  use:    {row["description"]}')
        click.echo(f'  status: {row["status"]}')


@click.command()
@click.argument('model_names', nargs=-1)
@click.option('--detectors/--no-detectors', default=True, show_default=True,
              help="Also fetch imgutils' face and head detector models.")
@click.option('--revision', default=None, help='Hub revision of the models.')
def download(model_names, detectors, revision):
    """Fetch models into the Hugging Face cache for later offline use (default: the default model)."""
    failed = False
    for name in model_names or (DEFAULT_MODEL,):
        try:
            for line in download_model(name, revision=revision):
                click.echo(line)
        except FaceQualityError as err:
            click.echo(f'Error: {err}', err=True)
            failed = True
    if detectors:
        try:
            for line in download_detectors():
                click.echo(line)
        except FaceQualityError as err:
            click.echo(f'Error: {err}', err=True)
            failed = True
    sys.exit(EXIT_UNAVAILABLE if failed else EXIT_OK)


@click.command()
@click.option('--json', 'as_json', is_flag=True, help='Machine-readable output.')
@exit_codes()
def plugins(as_json):
    """Registered detectors and taggers, with the plugins that gave them."""
    if as_json:
        click.echo(json.dumps({'plugins': list_plugins(), 'detectors': list_detectors(), 'taggers': list_taggers()},
                              indent=2))
        return
    click.echo('Plugins:')
    for name in list_plugins():
        click.echo(f'  {name}')
    for title, items in (('Detectors', list_detectors()), ('Taggers', list_taggers())):
        click.echo(f'{title}:')
        for item in items:
            click.echo(f'  {item["name"]:<16} {item["plugin"]}')
            if item['description']:
                click.echo(f'  {"":<16} {item["description"]}')


@click.command()
@click.argument('model_name', default=DEFAULT_MODEL)
@click.option('--out', '-o', '--output', 'output_dir', type=click.Path(file_okay=False), default=None,
              help='Target folder (default: the exports cache, where the same model name finds it).')
@click.option('--revision', default=None, help='Hub revision.')
@click.option('--overwrite', is_flag=True, help='Replace an existing export.')
@click.option('--atol', type=click.FloatRange(min=0), default=CHECK_TOLERANCE, show_default=True,
              help='Largest allowed torch/ONNX probability difference in the check.')
@click.option('--literal', is_flag=True,
              help='Trace the model as it is, without the exact speed rewrites of MetaFormer layers.')
@exit_codes()
def export(model_name, output_dir, revision, overwrite, atol, literal):
    """Export a model to a local ONNX folder, checked against torch (needs the torch extra).

    Exporting a published model that has its own model.onnx is worth it too: for the
    MetaFormer models the export (used from then on under the same model name) runs faster.
    """
    click.echo(export_onnx(model_name, output_dir=output_dir, revision=revision, overwrite=overwrite, atol=atol,
                           rewrite=not literal))
