"""Entry point: ``python -m session_manager``."""

import sys

if __name__ == "__main__":
    sys.stderr.write(
        "kato-sessions: the session manager is not built yet (issue 5); "
        "nothing to start. The processor runs with `python -m processor_image`.\n"
    )
    sys.exit(1)
