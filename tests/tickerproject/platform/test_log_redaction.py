"""Credentials never reach the log output, whatever the caller formats into the message."""

from __future__ import annotations

import logging

from tickerproject.platform.log_redaction import RedactSecretsFilter, redact


def test_redact_masks_query_strings_json_and_headers():
    line = (
        "GET wss://ws.kite.trade?api_key=abc&access_token=SECRETTOKEN1 "
        '{"api_secret": "SECRET2", "request_token": "RT3"} Authorization: token abc:SECRET4'
    )
    cleaned = redact(line)
    for secret in ("SECRETTOKEN1", "SECRET2", "RT3", "SECRET4"):
        assert secret not in cleaned
    assert "api_key=abc" in cleaned  # the api_key is not a secret and helps operators


def test_filter_rewrites_args_and_exceptions(caplog):
    logger = logging.getLogger("tests.redaction")
    logger.addFilter(RedactSecretsFilter())
    try:
        with caplog.at_level(logging.INFO, logger="tests.redaction"):
            logger.info("connecting to %s", "ws://x?api_key=k&access_token=TOPSECRET")
            try:
                raise RuntimeError("bad access_token=ALSOSECRET")
            except RuntimeError:
                logger.exception("failed")
        text = caplog.text
        assert "TOPSECRET" not in text
        assert "***" in text
        assert "ALSOSECRET" not in "".join(r.exc_text or "" for r in caplog.records)
    finally:
        logger.filters.clear()


def test_uvicorns_access_log_masks_a_request_token_in_the_request_line():
    from uvicorn.logging import AccessFormatter

    from tickerproject.serve import uvicorn_log_config

    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/kite/callback/?account=1&request_token=abc123secret&state=x", "1.1", 302),
        None,
    )
    assert "tickerproject.platform.log_redaction.RedactSecretsFilter" in str(uvicorn_log_config()["filters"])
    assert RedactSecretsFilter().filter(record)
    line = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s').format(record)
    assert "abc123secret" not in line
    assert "request_token=***&state=x" in line and line.endswith(" 302 Found")
