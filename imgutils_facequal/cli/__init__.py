"""The ``imgutils-facequal`` command line: the commands, their output records and the model status.

Exit codes:

* 0: everything went through;
* 1: the run finished, but some inputs could not be read (each has an error row);
* 2: a usage error (unknown option, bad value);
* 3: a model, backend or plugin cannot be had (nothing was scored);
* 130: interrupted (Ctrl-C); rows already written stay, and a rerun resumes.
"""
import click

from .. import __version__
from .common import show_status_on_stderr
from .curate import crop, filter_command
from .demo import demo
from .evaluate import eval_crops
from .models import download, export, models, plugins
from .report import report
from .score import score

__all__ = ['main']


@click.group(context_settings={'help_option_names': ['-h', '--help']})
@click.version_option(__version__, '--version', prog_name='imgutils-facequal')
def main():
    """Score how good anime faces are (poor, ok, good, excellent), over folders of images.

    Exit codes: 0 all done; 1 some inputs failed (see their error rows); 2 usage error;
    3 a model, backend, plugin or the output is not available; 130 interrupted (rerun to resume).
    Status lines and warnings go to stderr, one line each.
    """
    show_status_on_stderr()

for command in (score, filter_command, crop, report, models, download, plugins, export, eval_crops, demo):
    main.add_command(command)
