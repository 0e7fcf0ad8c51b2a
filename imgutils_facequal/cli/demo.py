"""``imgutils-facequal demo``: the Gradio demo (`imgutils_facequal.launch_demo`) from the command line."""
import click

from .common import EXIT_UNAVAILABLE, exit_codes, fail, settings_from, settings_options


@click.command()
@click.option('--host', default='127.0.0.1', show_default=True,
              help='Where to listen: this machine only, or 0.0.0.0 for the others on the network.')
@click.option('--port', type=click.IntRange(min=1, max=65535), default=None,
              help="Port (default: Gradio's, 7860 or the next free one).")
@click.option('--open-browser', is_flag=True, help='Open the page in the default browser.')
@settings_options
@exit_codes()
def demo(host, port, open_browser, **kwargs):
    """Open a web page to try the model on one picture: upload or paste an image, see each face boxed and
    labelled with its class and probabilities; sliders for the detector's thresholds, a choice of model
    (a registered one or a local folder). The scoring options give its starting settings. Runs offline
    from the Hugging Face cache; no share link, no analytics. Needs the demo extra:
    pip install 'imgutils-facequal[demo]'. Stop it with Ctrl-C (exit status 0).
    """
    settings = settings_from(kwargs)
    try:
        from ..demo import launch_demo
        launch_demo(settings, server_name=host, server_port=port, inbrowser=open_browser)
    except ImportError as err:
        fail(str(err), EXIT_UNAVAILABLE)
    except KeyboardInterrupt:  # how a server is stopped, not a failure (Gradio itself catches most of them)
        pass
    click.echo('Demo stopped.', err=True)
