"""``python -m fokkerplanck``: the command line (see :mod:`fokkerplanck.interface.cli`)."""

import sys

from .interface.cli import main

sys.exit(main())
