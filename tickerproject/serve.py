"""`python -m tickerproject.serve [--host H] [--port P] [--workers N]`: the web app under uvicorn.

The Dockerfile's CMD and `runticker --serve` both start uvicorn with `uvicorn_options()`, so the
proxies uvicorn believes X-Forwarded-For from are `settings.TRUSTED_PROXIES` (FORWARDED_ALLOW_IPS,
default none), the same list `tickerproject.client_address` uses: never uvicorn's own default
(loopback) nor '*'.
"""

from __future__ import annotations

import argparse
import copy
import os
from typing import Any

APP = "tickerproject.asgi:application"


def uvicorn_options() -> dict[str, Any]:
    """The uvicorn settings every way of serving the app shares (besides host, port and logging)."""
    from django.conf import settings

    return {
        "proxy_headers": True,
        # A list (empty: trust no proxy), so uvicorn does not fall back to its loopback default.
        "forwarded_allow_ips": list(settings.TRUSTED_PROXIES),
        # No per-client permessage-deflate: compressing every chain frame once per browser costs several
        # times the CPU of the rest of the fan-out (docs/benchmarks.md); chain frames are compact instead.
        "ws_per_message_deflate": False,
        "lifespan": "off",  # Django has no lifespan handlers
        "log_config": uvicorn_log_config(),
    }


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's own logging, with credentials masked: the access log prints every request line, and
    Kite's login callback carries a `request_token` in its query string."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"redact_secrets": {"()": "tickerproject.platform.log_redaction.RedactSecretsFilter"}}
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).append("redact_secrets")
    return config


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tickerproject.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tickerproject.settings")
    import uvicorn

    uvicorn.run(APP, host=args.host, port=args.port, workers=args.workers, **uvicorn_options())


if __name__ == "__main__":
    main()
