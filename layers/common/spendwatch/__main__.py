"""`python -m spendwatch` is the `spendwatch` command."""

import sys

from spendwatch.cli.main import main

sys.exit(main())
