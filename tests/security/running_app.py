"""The project's ASGI app under a real uvicorn process, started exactly as the Dockerfile starts it.

`Dockerfile`'s CMD is read and run (host and port replaced by a free loopback port), so what the
hostile-input tests prove is what the image does: if the CMD ever trusts every proxy again, they
fail. The app runs on a SQLite database migrated once per test session (copied for each app, so
each starts with fresh data and a fresh in-process cache, which holds the sign-in counts) with one
staff user.

Fixtures (registered in tests/security/conftest.py):
- `running_app`: a `RunningApp` with the Dockerfile's defaults (no trusted proxy);
- `start_running_app(**env)`: more apps with extra environment, e.g. FORWARDED_ALLOW_IPS="127.0.0.1".
A `RunningApp` has `.base_url`, `.staff_username`, `.staff_password`, `.staff_session()` (a
`requests.Session` signed in to the admin), `.django_python(code)` (runs code with Django set up on the
app's own database and settings, returns its stdout) and `.log()`.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.faults.stack import REPO, Proc, free_port, wait_until

DOCKERFILE = REPO / "Dockerfile"
STAFF_USERNAME = "ops"
_CREATE_STAFF = """
import django, sys
django.setup()
from django.core.management import call_command
from django.contrib.auth import get_user_model
call_command("migrate", "--noinput", verbosity=0)
get_user_model().objects.create_user(sys.argv[1], password=sys.argv[2], is_staff=True, is_superuser=True)
"""


def dockerfile_command(host: str, port: int) -> list[str]:
    """The Dockerfile's CMD (exec form) with `--host`/`--port` replaced, runnable from this venv."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if line.startswith("CMD ")]
    assert len(lines) == 1, "the Dockerfile must have one exec-form CMD"
    argv: list[str] = json.loads(lines[0][4:])
    if argv[0] in ("python", "python3"):
        argv = [sys.executable, *argv[1:]]
    else:  # a console script such as uvicorn: the same module from this venv
        argv = [sys.executable, "-m", argv[0], *argv[1:]]
    replaced = {"--host": host, "--port": str(port)}
    for index, arg in enumerate(argv[:-1]):
        if arg in replaced:
            argv[index + 1] = replaced.pop(arg)
    assert not replaced, f"the Dockerfile's CMD has no {sorted(replaced)}"
    return argv


@dataclass
class RunningApp:
    base_url: str
    staff_username: str
    staff_password: str
    process: Proc = field(repr=False)
    env: dict[str, str] = field(default_factory=dict, repr=False)

    def django_python(self, code: str) -> str:
        """Run `code` in a fresh interpreter with Django set up on this app's database; its stdout."""
        result = subprocess.run(
            [sys.executable, "-c", "import django\ndjango.setup()\n" + code],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout

    def log(self) -> str:
        return self.process.log()

    def staff_session(self) -> requests.Session:
        """A session signed in to the admin as the staff user (sends the CSRF token as a browser does)."""
        session = requests.Session()
        session.get(f"{self.base_url}/admin/login/", timeout=10)
        response = session.post(
            f"{self.base_url}/admin/login/?next=/admin/",
            data={
                "username": self.staff_username,
                "password": self.staff_password,
                "csrfmiddlewaretoken": session.cookies["csrftoken"],
            },
            timeout=10,
        )
        assert response.status_code == 200 and "/admin/login/" not in response.url, self.log()[-2000:]
        return session


@dataclass
class AppTemplate:
    """A migrated SQLite database with the staff user, and the environment every app shares."""

    database: Path
    secret_key: str
    staff_password: str

    def env(self, database: Path, **extra: str) -> dict[str, str]:
        keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")
        env = {k: v for k, v in os.environ.items() if k in keep}
        env.update(
            DJANGO_SETTINGS_MODULE="tickerproject.settings",
            PYTHONUNBUFFERED="1",
            DEBUG="0",
            SECRET_KEY=self.secret_key,
            DATABASE_URL=f"sqlite:///{database}",
            ALLOWED_HOSTS="127.0.0.1,localhost",
            STATIC_MANIFEST="0",
            LOG_LEVEL="INFO",
        )
        env.update(extra)
        return env


def make_template(directory: Path) -> AppTemplate:
    template = AppTemplate(
        database=directory / "template.sqlite3",
        secret_key=secrets.token_urlsafe(40),
        staff_password=secrets.token_urlsafe(16),
    )
    result = subprocess.run(
        [sys.executable, "-c", _CREATE_STAFF, STAFF_USERNAME, template.staff_password],
        cwd=REPO,
        env=template.env(template.database),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        pytest.fail(f"migrating the running app's database failed: {result.stderr[-2000:]}")
    return template


def start_app(template: AppTemplate, directory: Path, **extra_env: str) -> RunningApp:
    """Copy the template database into `directory` and serve it as the Dockerfile does; wait until it answers."""
    directory.mkdir(parents=True, exist_ok=True)
    database = directory / "app.sqlite3"
    shutil.copyfile(template.database, database)
    port = free_port()
    log_path = directory / "uvicorn.log"
    env = template.env(database, **extra_env)
    with open(log_path, "ab") as log:  # the child keeps its own copy of the file descriptor
        popen = subprocess.Popen(
            dockerfile_command("127.0.0.1", port),
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    proc = Proc(name="web", popen=popen, log_path=log_path)
    app = RunningApp(
        base_url=f"http://127.0.0.1:{port}",
        staff_username=STAFF_USERNAME,
        staff_password=template.staff_password,
        process=proc,
        env=env,
    )

    def answering() -> bool:
        if not proc.alive():
            raise AssertionError(f"the app exited: {proc.log()[-2000:]}")
        return requests.get(f"{app.base_url}/api/health/", timeout=2).status_code < 500

    try:
        wait_until(answering, timeout=30, interval=0.1, what=f"the app on port {port}")
    except BaseException:
        proc.stop()
        raise
    return app


@pytest.fixture(scope="session")
def running_app_template(tmp_path_factory: pytest.TempPathFactory) -> AppTemplate:
    return make_template(tmp_path_factory.mktemp("running-app-template"))


@pytest.fixture
def start_running_app(running_app_template: AppTemplate, tmp_path: Path) -> Iterator:
    """`start_running_app(**env)` -> a RunningApp with that extra environment; all stopped after the test."""
    apps: list[RunningApp] = []

    def start(**extra_env: str) -> RunningApp:
        app = start_app(running_app_template, tmp_path / f"app{len(apps)}", **extra_env)
        apps.append(app)
        return app

    yield start
    for app in apps:
        app.process.stop()


@pytest.fixture
def running_app(start_running_app) -> RunningApp:
    """The app as the Dockerfile runs it, with default settings (no trusted proxy)."""
    return start_running_app()
