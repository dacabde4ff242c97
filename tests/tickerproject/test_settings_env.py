"""Settings come from the environment: each case runs Django's settings in a fresh interpreter."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.production_env import PRODUCTION

REPO = Path(__file__).resolve().parents[2]
PROBE = """
import json, django
from django.conf import settings
django.setup()
db = settings.DATABASES["default"]
print(json.dumps({
    "debug": settings.DEBUG,
    "engine": db["ENGINE"], "name": str(db["NAME"]), "host": db.get("HOST"), "port": db.get("PORT"),
    "user": db.get("USER"),
    "cache": settings.CACHES["default"]["BACKEND"], "cache_location": settings.CACHES["default"].get("LOCATION"),
    "layer": settings.CHANNEL_LAYERS["default"]["BACKEND"],
    "layer_hosts": settings.CHANNEL_LAYERS["default"].get("CONFIG", {}).get("hosts"),
    "group_expiry": settings.CHANNEL_LAYERS["default"].get("CONFIG", {}).get("group_expiry"),
    "broker": settings.CELERY_BROKER_URL, "eager": settings.CELERY_TASK_ALWAYS_EAGER,
    "redis": settings.REDIS_URL, "kite_root": settings.KITE_API_ROOT,
    "allowed_hosts": settings.ALLOWED_HOSTS, "hsts": settings.SECURE_HSTS_SECONDS,
}))
"""


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    # A clean environment: only what the case sets (plus PATH/HOME), so the CI's own variables don't leak in.
    clean = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), **env}
    clean.setdefault("DJANGO_SETTINGS_MODULE", "tickerproject.settings")
    return subprocess.run([sys.executable, *args], cwd=REPO, env=clean, capture_output=True, text=True, timeout=60)


def _settings(env: dict[str, str]) -> dict:
    result = _run(["-c", PROBE], env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(autouse=True)
def _no_dotenv():
    if (REPO / ".env").exists():
        pytest.skip("a .env file in the checkout would leak into these environment cases")


def test_nothing_set_is_embedded(tmp_path):
    found = _settings({"SECRET_KEY": "k" * 50})
    assert found["debug"] is False
    assert found["engine"] == "django.db.backends.sqlite3" and found["name"].endswith("db.sqlite3")
    assert found["cache"] == "django.core.cache.backends.locmem.LocMemCache"
    assert found["layer"] == "channels.layers.InMemoryChannelLayer"
    assert found["broker"] == "memory://" and found["eager"] is True and found["redis"] == ""
    assert found["kite_root"] == "https://api.kite.trade"


def test_database_url_switches_to_postgresql():
    found = _settings({"SECRET_KEY": "k" * 50, "DATABASE_URL": "postgres://tp:pw@db.internal:5433/ticker"})
    assert found["engine"] == "django.db.backends.postgresql"
    assert (found["host"], found["port"], found["name"], found["user"]) == ("db.internal", 5433, "ticker", "tp")
    assert found["cache"].endswith("LocMemCache")  # Redis is a separate switch


def test_database_url_accepts_a_sqlite_path(tmp_path):
    found = _settings({"SECRET_KEY": "k" * 50, "DATABASE_URL": f"sqlite:///{tmp_path}/other.sqlite3"})
    assert found["engine"] == "django.db.backends.sqlite3" and found["name"] == f"{tmp_path}/other.sqlite3"


def test_redis_url_switches_cache_channel_layer_and_celery():
    url = "redis://cache.internal:6380/2"
    found = _settings({"SECRET_KEY": "k" * 50, "REDIS_URL": url, "KITE_API_ROOT": "http://127.0.0.1:9"})
    assert found["cache"] == "django_redis.cache.RedisCache" and found["cache_location"] == url
    assert found["layer"] == "channels_redis.core.RedisChannelLayer"
    assert [host["address"] for host in found["layer_hosts"]] == [url]
    # longer than the layer's 5 s blocking receive, or idle websockets are dropped (tests/scale/test_web_workers.py)
    assert all(host["socket_timeout"] > 5 for host in found["layer_hosts"])
    # A dead web process's memberships lapse in minutes, and a live hub re-joins well before its own do.
    from streaming.web.chain_hub import GROUP_REJOIN_S

    assert 3 * GROUP_REJOIN_S <= found["group_expiry"] <= 900
    assert found["broker"] == url and found["eager"] is False and found["redis"] == url
    assert found["kite_root"] == "http://127.0.0.1:9"


def test_debug_off_without_secret_key_refuses_to_start():
    result = _run(["-c", PROBE], {})
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


def test_debug_on_runs_without_a_secret_key():
    found = _settings({"DEBUG": "1"})
    assert found["debug"] is True


def test_check_deploy_is_clean_with_the_production_variables(tmp_path):
    env = {**PRODUCTION, "SECRET_KEY": secrets.token_urlsafe(50), "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3"}
    result = _run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
    found = _settings(env)
    assert found["allowed_hosts"] == ["ticker.example.com"] and found["hsts"] == 31536000


def test_check_deploy_flags_the_embedded_defaults(tmp_path):
    env = {"SECRET_KEY": secrets.token_urlsafe(50), "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3"}
    result = _run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], env)
    assert result.returncode != 0
    assert "SECURE_HSTS_SECONDS" in result.stdout + result.stderr
