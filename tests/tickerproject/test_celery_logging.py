"""Celery's workers and beat log through the project's logging, so credentials stay masked there too."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# What `celery worker` / `celery beat` do at start: set up logging, then log as the tasks do.
_WORKER_LOGGING = """
import django
django.setup()
import logging
from tickerproject.celery import app
app.log.setup(loglevel="INFO")
logging.getLogger("subscriptions.tasks").warning("kite session with access_token=SECRET123abc")
"""


def test_a_worker_masks_an_access_token_in_its_log():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tickerproject.settings", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", _WORKER_LOGGING], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]
    output = result.stdout + result.stderr
    assert "access_token=***" in output
    assert "SECRET123abc" not in output
