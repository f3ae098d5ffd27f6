"""`python -m cs_pipeline.cli`: the `cs-pipeline` command."""

import sys

from cs_pipeline.cli import main

sys.exit(main())
