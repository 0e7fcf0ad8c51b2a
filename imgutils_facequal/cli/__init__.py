"""The ``imgutils-facequal`` command line: the commands, their output records and the model status.

Exit codes:

* 0: everything went through;
* 1: the run finished, but some inputs could not be read (each has an error row);
* 2: a usage error (unknown option, bad value);
* 3: a model, backend or plugin cannot be had (nothing was scored);
* 130: interrupted (Ctrl-C); rows already written stay, and a rerun resumes;
* 141: the reader of stdout went away (``score | head``): the command ends quietly.
"""
import os
import sys
import threading

import click

from .. import __version__
from .common import EXIT_INTERRUPTED, closed_pipe, end_quietly_on_closed_pipe, show_status_on_stderr
from .curate import crop, filter_command
from .demo import demo
from .evaluate import eval_crops
from .models import download, export, models, plugins
from .report import report
from .score import score

__all__ = ['main', 'console']


class _Commands(click.Group):
    """The command group: the whole first sentence of each command's description in the list of commands
    (wrapped, not cut off), and a quiet end when the reader of stdout has gone."""

    def format_commands(self, context, formatter):
        commands = [(name, self.get_command(context, name)) for name in self.list_commands(context)]
        rows = [(name, command.get_short_help_str(limit=1000)) for name, command in commands
                if command is not None and not command.hidden]
        if rows:
            with formatter.section('Commands'):
                formatter.write_dl(rows)

    def invoke(self, context):
        try:
            return super().invoke(context)
        except OSError as err:
            if closed_pipe(err):
                end_quietly_on_closed_pipe()
            raise


@click.group(cls=_Commands, context_settings={'help_option_names': ['-h', '--help']})
@click.version_option(__version__, '--version', prog_name='imgutils-facequal')
def main():
    """Score how good anime faces are (poor, ok, good, excellent), over folders of images.

    Exit codes: 0 all done; 1 some inputs failed (see their error rows); 2 usage error;
    3 a model, backend, plugin or the output is not available; 130 interrupted (rerun to resume);
    141 the output's reader closed the pipe. Status lines and warnings go to stderr, one line each.
    """
    show_status_on_stderr()

for command in (score, filter_command, crop, report, models, download, plugins, export, eval_crops, demo):
    main.add_command(command)


def console():
    """The console script: `main`, except that a run interrupted while the pipeline's threads live (one may be inside
    a model call) ends at once, after flushing its output. Python's finalisation would destroy the model's
    session under that call and abort the process ("terminate called without an active exception", no exit
    status 130); what the run wrote is closed by then."""
    try:
        main()
    except SystemExit as exit:
        ours = [thread for thread in threading.enumerate()
                if thread.daemon and thread.name.startswith('facequal-') and thread.is_alive()]
        if exit.code == EXIT_INTERRUPTED and ours:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
            os._exit(EXIT_INTERRUPTED)
        raise
