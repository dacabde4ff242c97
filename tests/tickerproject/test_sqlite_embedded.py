"""Embedded mode (SQLite file): an admin or API write must wait for the background backfill's write,
not fail with "database is locked" (it did, when a read transaction tried to become a write)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import sqlite3, sys, threading, time
    import django
    django.setup()
    from django.db import connection, transaction

    path = sys.argv[1]
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE t (v INTEGER)")

    began = threading.Event()

    def backfill_writer():  # another connection, like the ticker's backfill thread
        other = sqlite3.connect(path, timeout=20, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO t VALUES (1)")
        began.set()
        time.sleep(0.5)
        other.execute("COMMIT")
        other.close()

    thread = threading.Thread(target=backfill_writer)
    thread.start()
    began.wait()
    with transaction.atomic():  # read, then write: what chain_subscribe does
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM t")
            cursor.execute("INSERT INTO t VALUES (2)")
    thread.join()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM t")
        print("rows", cursor.fetchone()[0])
    """
)


def test_a_write_waits_for_a_concurrent_writer_instead_of_failing(tmp_path):
    db = tmp_path / "embedded.sqlite3"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DATABASE_URL=f"sqlite:///{db}", DJANGO_SETTINGS_MODULE="tickerproject.settings", SECRET_KEY="x" * 50)
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(db)], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "rows 2" in result.stdout
