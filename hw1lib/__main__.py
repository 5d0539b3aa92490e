"""``python -m hw1lib <command>``: see :mod:`hw1lib.cli`."""

import sys

from hw1lib.cli import main

sys.exit(main())
