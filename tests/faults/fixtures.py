"""Fixtures for the fault suite and the full-run security test (imported by their conftest.py files):
a migrated template database (once per run) and a `make_stack` factory.

The suite needs a PostgreSQL server (the shared one at FAULTS_POSTGRES_ADMIN_URL, default
postgres://postgres@127.0.0.1:5432/postgres) and the `redis-server` binary; without them it skips,
saying why. Every case gets its own database (copied from the template), its own redis-server and
its own log folder under test-artifacts/<case>/.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys

import pytest

from tests.faults.stack import REPO, SHARED_POSTGRES, Stack, create_database, drop_database, postgres_reachable


def _missing() -> str | None:
    if not shutil.which("redis-server"):
        return "the fault suite needs the redis-server binary"
    if not postgres_reachable(SHARED_POSTGRES):
        return f"the fault suite needs PostgreSQL at {SHARED_POSTGRES} (set FAULTS_POSTGRES_ADMIN_URL)"
    return None


@pytest.fixture(scope="session")
def fault_template_db():
    reason = _missing()
    if reason:
        pytest.skip(reason)
    template = f"tp_faults_template_{os.getpid()}_{secrets.token_hex(3)}"
    url = create_database(SHARED_POSTGRES, template)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DJANGO_SETTINGS_MODULE": "tickerproject.settings",
        "SECRET_KEY": secrets.token_urlsafe(40),
        "DATABASE_URL": url,
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"], cwd=REPO, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        drop_database(SHARED_POSTGRES, template)
        pytest.fail(f"migrating the fault template database failed: {result.stderr[-2000:]}")
    yield template
    drop_database(SHARED_POSTGRES, template)


@pytest.fixture
def make_stack(fault_template_db, request):
    """`make_stack(**options)` -> a Stack named after the test (closed at the end of the test)."""
    stacks: list[Stack] = []
    case = request.node.name.replace("[", "_").replace("]", "").replace("-", "_")[:40]

    def make(**options) -> Stack:
        stack = Stack(case=case, **{"template_db": fault_template_db, **options})
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.close()
