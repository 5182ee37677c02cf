"""`python -m daemon ...`: the same program as the `nvd` command."""

from __future__ import annotations

import sys

from daemon.cli import main

sys.exit(main())
