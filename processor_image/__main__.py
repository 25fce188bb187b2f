"""``python -m processor_image``: serve one KATO processor, configured by the environment."""

from __future__ import annotations

import importlib.util
import logging
import os
import sys

import uvicorn

from processor_image.service.app import serving_app
from processor_image.service.config import ConfigError, ServiceConfig


def main() -> int:
    """Run until stopped; a configuration problem exits with status 2 and says what is wrong."""
    try:
        config = ServiceConfig.from_env(os.environ)
    except ConfigError as exc:
        print(f"kato processor: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    fast = importlib.util.find_spec("uvloop") is not None
    uvicorn.run(
        serving_app(config, os.environ),
        host=config.host,
        port=config.port,
        log_level=config.log_level,
        access_log=False,
        loop="uvloop" if fast else "asyncio",
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
        lifespan="on",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
