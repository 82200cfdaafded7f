"""The 0.1 path of the command line, kept so that ``python -m fokkerplanck.cli`` and ``from fokkerplanck.cli
import main`` still work; the code is :mod:`fokkerplanck.interface.cli` (``python -m fokkerplanck`` is the same)."""

import sys

from .interface import cli as _cli
from .interface.cli import COMMANDS, main

__all__ = ["COMMANDS", "main"]


def __getattr__(name):
    return getattr(_cli, name)


if __name__ == "__main__":
    sys.exit(main())
