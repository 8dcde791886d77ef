"""``python -m fairprune`` = the ``fairprune`` command."""

import sys

from fairprune.cli import main

sys.exit(main())
