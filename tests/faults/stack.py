"""The fault-suite harness: a whole stack of real processes, and what to assert about it.

`Stack` runs, each as a subprocess with its own environment and its log captured to a file under
`test-artifacts/<case>/`:
- N `manage.py runticker` processes, optionally a Celery worker,
- against a dedicated PostgreSQL database that the harness creates and migrates (on the shared
  server, or on a private server started by `PrivatePostgres` so a case may restart it),
- and a private `redis-server` on a random port (so a case may kill and restart it).
The Kite simulator runs in the test process (`start_simulator`), so a case can flip its faults
(drop, stall, malformed frames, revoked tokens) and see exactly what each connection subscribed.

Assertions: no Traceback in any log, ticks flowing into Redis (`tp:latest` records received
recently), no account streamed twice (from what the simulator sees: one token on at most one
connection, no more connections per api_key than the account may open; and from the lease keys),
and the database intact (subscriptions, assignments, accounts, candles).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
SHARED_POSTGRES = os.environ.get("FAULTS_POSTGRES_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
LEASE_PREFIX = "tp:lease:account:"
LATEST_KEY = "tp:latest"
STATUS_KEY = "tp:ticker:status"
# A log line that means a bug, not a handled fault.
TRACEBACK_MARKERS = ("Traceback (most recent call last)", "Unhandled exception", "Task exception was never retrieved")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], Any], *, timeout: float, interval: float = 0.2, what: str = "") -> Any:
    """Poll until `predicate()` is truthy; returns its value or raises AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            last = predicate()
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or predicate} (last value {last!r})")


# --- Redis -----------------------------------------------------------------------------------------------
class RedisServer:
    """A private `redis-server` on a random port; `kill()` and `start()` again keep the port."""

    def __init__(self, log_path: Path) -> None:
        if not shutil.which("redis-server"):
            raise RuntimeError("redis-server is not installed")
        self.port = free_port()
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_until(self.ping, timeout=10, what=f"redis-server on port {self.port}")

    def ping(self) -> bool:
        import redis

        with contextlib.suppress(Exception):
            return bool(redis.Redis(port=self.port, socket_timeout=0.5).ping())
        return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)
        self.process = None

    def client(self):
        import redis

        return redis.Redis(port=self.port, socket_timeout=2)  # bytes: the channel layer's keys are binary


# --- PostgreSQL -----------------------------------------------------------------------------------------
def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


class PrivatePostgres:
    """A PostgreSQL server of our own (initdb into a temp dir, random port), so a case can restart it.
    As root the server runs as the `postgres` system user (PostgreSQL refuses to run as root)."""

    def __init__(self, log_path: Path) -> None:
        bindir = _pg_bin()
        if bindir is None:
            raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
        self.bindir = bindir
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="tp-faults-pg-"))
        self.data = self.dir / "data"
        self.log_path = log_path
        self._as: list[str] = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.dir, "postgres", "postgres")
        self._run([str(bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"])

    def _run(self, argv: list[str], timeout: float = 60) -> None:
        result = subprocess.run(self._as + argv, capture_output=True, text=True, timeout=timeout)
        with open(self.log_path, "a") as log:
            log.write(result.stdout + result.stderr)
        if result.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {result.stderr[-500:]}")

    def admin_url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        # -l: the server must not inherit our captured stdout, or pg_ctl's caller waits for it forever.
        server_log = str(self.dir / "server.log")
        self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", server_log, "-o", options, "-w", "start"])

    def stop(self, mode: str = "immediate") -> None:
        self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def postgres_reachable(admin_url: str = SHARED_POSTGRES) -> bool:
    import psycopg

    try:
        with psycopg.connect(admin_url, connect_timeout=2):
            return True
    except Exception:
        return False


def create_database(admin_url: str, name: str, *, template: str | None = None) -> str:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return admin_url.rsplit("/", 1)[0] + "/" + name


def drop_database(admin_url: str, name: str) -> None:
    import psycopg

    with contextlib.suppress(Exception), psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- processes ------------------------------------------------------------------------------------------
@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.killpg(self.popen.pid, sig)

    def wait(self, timeout: float) -> int | None:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 8.0) -> int | None:
        self.signal(signal.SIGTERM)
        code = self.wait(timeout)
        if code is None:
            self.signal(signal.SIGKILL)
            code = self.wait(5)
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class SeedInfo:
    """What `tests.faults.seed.seed_stack` put into the stack's database (secrets included: tests only)."""

    accounts: list[dict[str, Any]]
    instruments: list[dict[str, Any]]
    subscriptions: int

    @property
    def tokens(self) -> list[int]:
        return [i["instrument_token"] for i in self.instruments]


@dataclass
class Stack:
    """One stack for one test case. Use as a context manager; `close()` stops everything."""

    case: str
    postgres_admin_url: str = SHARED_POSTGRES
    template_db: str | None = None
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(40))
    ticker_args: tuple[str, ...] = ("--mode", "live", "--no-backfill")
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.dir = ARTIFACTS / self.case
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.db_name = f"tp_faults_{self.case}"[:60]
        self.database_url = ""
        self.redis = RedisServer(self.dir / "redis.log")
        self.processes: list[Proc] = []
        self.simulator: Any = None
        self.seed: SeedInfo | None = None

    # --- set up ---------------------------------------------------------------------------------------
    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def prepare(self, **seed_options: Any) -> SeedInfo:
        """Start Redis, create + migrate + seed the database, start the simulator with the seeded accounts."""
        self.redis.start()
        self.database_url = create_database(self.postgres_admin_url, self.db_name, template=self.template_db)
        if self.template_db is None:
            self.manage(["migrate", "--noinput"], timeout=180)
        self.seed = seed_database(self.env(), **seed_options)
        self.start_simulator()
        return self.seed

    def env(self, **extra: str) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")}
        env = {
            **keep,
            "DJANGO_SETTINGS_MODULE": "tickerproject.settings",
            "PYTHONUNBUFFERED": "1",
            "DEBUG": "0",
            "SECRET_KEY": self.secret_key,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis.url(0),
            "LOG_LEVEL": "INFO",
            "RELOAD_MIN_INTERVAL_S": "0.2",
            "REDIS_BREAKER_RESET_S": "1.0",
        }
        if self.simulator is not None:
            env["KITE_WS_ROOT"] = self.simulator.ws_url
            env["KITE_API_ROOT"] = self.simulator.http_url
        env.update(self.extra_env)
        env.update(extra)
        return env

    def manage(self, args: list[str], *, timeout: float = 60) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        with open(self.dir / "manage.log", "a") as log:
            log.write(f"$ manage.py {' '.join(args)}\n{result.stdout}{result.stderr}")
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed: {result.stderr[-1500:]}")
        return result

    def start_simulator(self, *, ticks_per_second: float = 1.0) -> Any:
        from mocking.market import InstrumentSpec
        from mocking.simulator.build import make_market
        from mocking.simulator.server import start_simulator
        from mocking.simulator.state import SimulatorState

        assert self.seed is not None
        specs = [InstrumentSpec(**spec_fields(i)) for i in self.seed.instruments]
        state = SimulatorState(market=make_market(specs, seed=7), instruments=specs, ticks_per_second=ticks_per_second)
        for account in self.seed.accounts:
            state.register_account(account["api_key"], account["api_secret"], account["access_token"])
        self.simulator = start_simulator(state)
        return self.simulator

    def start(self, name: str, argv: list[str], **env: str) -> Proc:
        log_path = self.dir / f"{name}.log"
        log = open(log_path, "ab")
        popen = subprocess.Popen(
            argv, cwd=REPO, env=self.env(**env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        proc = Proc(name=name, popen=popen, log_path=log_path)
        self.processes.append(proc)
        return proc

    def start_ticker(self, name: str = "ticker", *args: str, **env: str) -> Proc:
        return self.start(name, [sys.executable, "manage.py", "runticker", *(args or self.ticker_args)], **env)

    def start_worker(self, name: str = "worker") -> Proc:
        argv = [sys.executable, "-m", "celery", "-A", "tickerproject", "worker", "-P", "solo", "--loglevel", "INFO"]
        argv += ["--without-gossip", "--without-mingle"]  # as deployed: see docs/scaling.md
        return self.start(name, argv)

    def run_task(self, name: str, *, timeout: float = 30) -> Any:
        """Send a Celery task by name from a fresh process in the stack's environment and wait for its result
        (so a case can show a worker does work through the fault)."""
        code = (
            "import json, django; django.setup()\n"
            "from tickerproject.celery import app\n"
            f"print('RESULT' + json.dumps(app.send_task({name!r}).get(timeout={timeout}), default=str))\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=REPO, env=self.env(), capture_output=True, text=True, timeout=timeout + 30
        )
        if result.returncode != 0:
            raise AssertionError(f"task {name} did not complete: {result.stderr[-1500:]}")
        line = next(x for x in result.stdout.splitlines() if x.startswith("RESULT"))
        return json.loads(line[len("RESULT") :])

    def close(self) -> None:
        for proc in self.processes:
            with contextlib.suppress(Exception):
                proc.stop()
        if self.simulator is not None:
            with contextlib.suppress(Exception):
                self.simulator.stop()
        self.redis.kill()
        drop_database(self.postgres_admin_url, self.db_name)

    # --- observation ----------------------------------------------------------------------------------
    def latest(self) -> dict[int, dict[str, Any]]:
        from streaming.ticker.publishers import decode_latest  # the publisher's own record format

        raw = self.redis.client().hgetall(LATEST_KEY)
        return {int(k): decode_latest(v) for k, v in raw.items()}

    def fresh_tokens(self, within_s: float = 2.5) -> set[int]:
        """Instruments whose latest tick reached Redis in the last `within_s` seconds."""
        now = time.time()
        return {t for t, r in self.latest().items() if (r.get("received_at") or 0) >= now - within_s}

    def wait_ticks_flowing(
        self, *, tokens: Iterable[int] | None = None, share: float = 0.9, timeout: float = 20
    ) -> float:
        """Wait until at least `share` of `tokens` (default: every seeded instrument) are fresh in Redis;
        returns the seconds it took."""
        wanted = set(tokens if tokens is not None else (self.seed.tokens if self.seed else []))
        assert wanted, "no instruments to watch"
        started = time.monotonic()
        wait_until(
            lambda: len(self.fresh_tokens() & wanted) >= share * len(wanted),
            timeout=timeout,
            what=f"ticks for {share:.0%} of {len(wanted)} instruments reaching Redis",
        )
        return time.monotonic() - started

    def lease_owners(self) -> dict[int, str]:
        client = self.redis.client()
        return {
            int(k[len(LEASE_PREFIX) :]): (client.get(k) or b"").decode() for k in client.scan_iter(LEASE_PREFIX + "*")
        }

    def ticker_status(self) -> dict[str, Any] | None:
        raw = self.redis.client().get(STATUS_KEY)
        return json.loads(raw) if raw else None

    def streamed_twice(self) -> dict[str, Any]:
        """What the simulator sees streamed more than once: tokens subscribed on two open connections of
        one api_key, and api_keys with more open connections than their account may have. Empty is good."""
        problems: dict[str, Any] = {}
        state = self.simulator.state
        limits = {a["api_key"]: a["max_connections"] for a in self.seed.accounts}
        for api_key, limit in limits.items():
            connections = state.live_connections(api_key)
            seen = Counter(t for c in connections for t in c.modes)
            duplicated = sorted(t for t, n in seen.items() if n > 1)
            if duplicated:
                problems[f"{api_key}: tokens on two connections"] = duplicated[:10]
            if len(connections) > limit:
                problems[f"{api_key}: connections"] = f"{len(connections)} open, the account may have {limit}"
        all_tokens = Counter(t for c in state.live_connections() for t in c.modes)
        across = sorted(t for t, n in all_tokens.items() if n > 1)
        if across:
            problems["tokens streamed by two connections"] = across[:10]
        return problems

    def assert_no_account_streamed_twice(self) -> None:
        problems = self.streamed_twice()
        assert not problems, f"streamed twice: {problems}"

    def assert_no_tracebacks(self, *, allow: Iterable[str] = ()) -> None:
        """No Traceback / unhandled exception in any process's log (lines containing an `allow` text excepted)."""
        found = []
        for proc in self.processes:
            lines = proc.log().splitlines()
            for n, line in enumerate(lines):
                if any(marker in line for marker in TRACEBACK_MARKERS) and not any(a in line for a in allow):
                    context = "\n".join(lines[max(n - 2, 0) : n + 12])
                    found.append(f"--- {proc.name} ({proc.log_path}) line {n + 1}:\n{context}")
        assert not found, "unhandled exceptions in the logs:\n" + "\n".join(found[:5])

    def assert_nothing_lost(self, before: dict[str, Any]) -> None:
        """Subscriptions (with their assignment) and accounts exactly as `before`; no candle lost (a
        worker may have backfilled more meanwhile)."""
        after = self.database_state()
        assert after["subscriptions"] == before["subscriptions"], "subscriptions or their assignment changed"
        assert after["accounts"] == before["accounts"], "accounts changed"
        assert after["candles"] >= before["candles"], f"candles lost: {before['candles']} -> {after['candles']}"

    def database_state(self) -> dict[str, Any]:
        """Subscriptions (with their assignment), accounts and candles, for before/after comparisons."""
        import psycopg

        with psycopg.connect(self.database_url.replace("postgres://", "postgresql://"), connect_timeout=5) as conn:
            subscriptions = conn.execute(
                "SELECT id, instrument_id, mode, is_active, account_id, connection_index"
                " FROM subscriptions_subscription ORDER BY id"
            ).fetchall()
            accounts = conn.execute(
                "SELECT id, label, api_key, is_active, is_mock FROM subscriptions_tradingaccount ORDER BY id"
            ).fetchall()
            candles = conn.execute("SELECT count(*) FROM history_candle").fetchone()[0]
        return {"subscriptions": subscriptions, "accounts": accounts, "candles": candles}


def spec_fields(instrument: dict[str, Any]) -> dict[str, Any]:
    import datetime as dt

    fields = dict(instrument)
    fields.pop("id", None)
    if fields.get("expiry"):
        fields["expiry"] = dt.date.fromisoformat(fields["expiry"])
    return fields


def seed_database(env: dict[str, str], **options: Any) -> SeedInfo:
    """Run `tests.faults.seed.seed_stack` in a subprocess on the stack's database; returns what it made."""
    code = (
        "import json, sys, django; django.setup();"
        "from tests.faults.seed import seed_stack;"
        f"print('SEED' + json.dumps(seed_stack(**json.loads({json.dumps(json.dumps(options))}))))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"seeding failed: {result.stderr[-1500:]}")
    line = next(x for x in result.stdout.splitlines() if x.startswith("SEED"))
    return SeedInfo(**json.loads(line[4:]))


__all__ = [
    "ARTIFACTS",
    "PrivatePostgres",
    "Proc",
    "RedisServer",
    "SeedInfo",
    "Stack",
    "create_database",
    "drop_database",
    "free_port",
    "postgres_reachable",
    "wait_until",
]
