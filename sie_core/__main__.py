"""``python -m sie_core`` runs the ``sie-agents`` command line."""

import sys

from .cli import main

sys.exit(main())
