"""``python -m mtbert``: the command line, also what ``torchrun -m mtbert train ...`` starts per process."""

import sys

from .cli import main

sys.exit(main())
