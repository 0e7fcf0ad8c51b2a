"""The ``imgutils-facequal`` command line: the commands, their output records and the model status."""
from .commands import main

__all__ = ['main']
