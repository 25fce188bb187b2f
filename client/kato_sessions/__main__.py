"""``python -m kato_sessions``: the ``kato-sessions`` command line."""

import sys

from kato_sessions.cli import main

sys.exit(main())
