"""`python -m benchmarks.suite`."""

import sys

from benchmarks.suite.main import main

sys.exit(main())
