"""`python -m poolgate.bench.suite`."""

import sys

from poolgate.bench.suite.main import main

sys.exit(main())
