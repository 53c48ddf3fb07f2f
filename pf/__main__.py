"""``python -m pf`` is the ``pf`` command."""

import sys

from pf.cli import main

sys.exit(main())
