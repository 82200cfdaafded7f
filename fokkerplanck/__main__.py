"""``python -m fokkerplanck``: the command line (see :mod:`fokkerplanck.cli`)."""
import sys

from .cli import main

sys.exit(main())
