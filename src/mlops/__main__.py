"""``python -m mlops``: the same CLI as the ``mlops`` command."""

import sys

from mlops.cli import main

sys.exit(main())
