"""``python -m violetv2`` = the ``violet`` command."""

import sys

from .cli import main

sys.exit(main())
