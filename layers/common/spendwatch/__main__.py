"""`python -m spendwatch` is the `spendwatch` command."""

import sys

from spendwatch.cli import main

sys.exit(main())
