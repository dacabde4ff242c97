"""The production settings: `check --deploy` is clean and the security headers and redirects really happen."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

from tests.production_env import PRODUCTION as PRODUCTION_ENV

REPO = Path(__file__).resolve().parents[2]

PRODUCTION = {**PRODUCTION_ENV, "STATIC_MANIFEST": "0"}

PROBE = """
import json, django
django.setup()
from django.core.management import call_command
from django.test import Client
from django.test.utils import setup_test_environment
setup_test_environment()
call_command("migrate", verbosity=0)
plain = Client(HTTP_HOST="ticker.example.com").get("/api/health/")
secure = Client(HTTP_HOST="ticker.example.com", HTTP_X_FORWARDED_PROTO="https").get("/admin/login/")
evil = Client(HTTP_HOST="evil.example", HTTP_X_FORWARDED_PROTO="https").get("/admin/login/")
print(json.dumps({
    "plain": [plain.status_code, plain.get("Location", "")],
    "secure": secure.status_code,
    "hsts": secure.get("Strict-Transport-Security", ""),
    "frame": secure.get("X-Frame-Options", ""),
    "nosniff": secure.get("X-Content-Type-Options", ""),
    "csrf_cookie_secure": bool(secure.cookies["csrftoken"]["secure"]) if "csrftoken" in secure.cookies else None,
    "evil": evil.status_code,
}))
"""


def _env(tmp_path: Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    return {
        **keep,
        **PRODUCTION,
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
        "DJANGO_SETTINGS_MODULE": "tickerproject.settings",
    }


def test_check_deploy_is_clean_under_the_production_settings(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_warns_when_metrics_are_open_to_anyone(tmp_path):
    env = _env(tmp_path)
    del env["METRICS_TOKEN"]
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "streaming.W001" in result.stderr + result.stdout
    assert "METRICS_TOKEN" in result.stderr + result.stdout


def test_production_settings_redirect_to_https_and_send_the_security_headers(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, env=_env(tmp_path), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["plain"] == [301, "https://ticker.example.com/api/health/"]
    assert found["secure"] == 200
    assert found["hsts"] == "max-age=31536000; includeSubDomains; preload"
    assert found["frame"] == "DENY"
    assert found["nosniff"] == "nosniff"
    assert found["csrf_cookie_secure"] is True
    assert found["evil"] == 400  # a Host not in ALLOWED_HOSTS


def test_docker_compose_will_not_start_with_metrics_open_or_every_proxy_trusted():
    import yaml

    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    env = compose["x-app"]["environment"]
    assert env["METRICS_TOKEN"].startswith("${METRICS_TOKEN:?")  # compose refuses to start without it
    assert env["FORWARDED_ALLOW_IPS"] == "${FORWARDED_ALLOW_IPS:-}"  # no proxy trusted unless configured
    assert "*" not in json.dumps(compose["services"]["web"].get("command", []))
