"""`python -m reconciler.cli`: the command line, for tests and scripts."""

import sys

from reconciler.cli.main import main

sys.exit(main())
