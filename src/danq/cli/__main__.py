"""`python -m danq.cli`: the same as the `danq` command."""

import sys

from danq.cli.main import main

sys.exit(main())
