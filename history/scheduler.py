"""Embedded beat: the django-celery-beat schedule run inside this process when there is no broker.

`make run` has no Redis, so no Celery worker or beat process; the periodic jobs (reconcile every
minute, expiry cleanup, instrument sync, backfill) must still run on their schedule, editable in the
admin as usual. `EmbeddedBeat` runs Celery's own beat service with the database scheduler in a
thread; instead of sending due tasks to a broker it runs them on a small thread pool (so a long
backfill never delays the minute-by-minute reconcile). A task already running is not queued again;
the tasks' own locks keep them from overlapping anyway. Missed runs are caught up once on start,
as Celery beat does (the schedule's last run times are stored in the database).

Use it from asyncio (`runticker --serve`): `await run_embedded_beat(stop_event)`; from a thread:
`beat = EmbeddedBeat(); beat.start(); ...; beat.stop()`; standalone: `manage.py runschedule`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from celery import Task
from celery.beat import Service
from django.db import close_old_connections, connections
from django_celery_beat.schedulers import DatabaseScheduler

logger = logging.getLogger(__name__)

_current: EmbeddedBeat | None = None
_current_lock = threading.Lock()


class TaskRunner:
    """Runs tasks inline (Celery's eager `apply`) on worker threads, one run per task name at a time."""

    def __init__(self, max_workers: int = 2) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="embedded-task")
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self.completed: list[tuple[str, str]] = []  # (task name, "ok" | error), the latest 100

    def submit(self, task: Task, args: tuple | list = (), kwargs: dict | None = None, *, key: str | None = None):
        """Queue `task`; returns the Future, or None when the same key is already queued or running."""
        key = key or task.name
        with self._lock:
            if key in self._running:
                logger.info("embedded beat: %s is still running; not queued again", key)
                return None
            self._running.add(key)
        return self._pool.submit(self._run, task, tuple(args), dict(kwargs or {}), key)

    def _run(self, task: Task, args: tuple, kwargs: dict, key: str) -> Any:
        close_old_connections()
        outcome = "ok"
        try:
            return task.apply(args=args, kwargs=kwargs, throw=True).get(propagate=True)
        except Exception as exc:
            outcome = f"{type(exc).__name__}: {exc}"
            logger.exception("embedded beat: task %s failed", key)
            return None
        finally:
            with self._lock:
                self._running.discard(key)
                self.completed = [*self.completed[-99:], (key, outcome)]
            connections.close_all()

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=True)


class EmbeddedScheduler(DatabaseScheduler):
    """The database scheduler, handing due tasks to the in-process TaskRunner instead of a broker."""

    runner: TaskRunner | None = None
    ready: threading.Event | None = None

    def setup_schedule(self) -> None:
        super().setup_schedule()
        self._do_sync()
        if self.ready is not None:
            self.ready.set()

    def apply_async(self, entry: Any, producer: Any = None, advance: bool = True, **kwargs: Any) -> Future | None:
        entry = self.reserve(entry) if advance else entry
        # Record the run (last_run_at, count) before the task starts, not while it writes: with SQLite
        # two writers at once would wait on each other.
        self._do_sync()
        task = self.app.tasks.get(entry.task)
        if task is None or self.runner is None:
            logger.error("embedded beat: unknown task %r for schedule %r", entry.task, entry.name)
            return None
        return self.runner.submit(task, entry.args or (), entry.kwargs or {})


class EmbeddedBeat:
    """Celery beat with the database schedule, in a daemon thread of this process."""

    def __init__(self, *, max_interval: float = 1.0, workers: int = 2) -> None:
        # The project's Celery app, made current when the tickerproject package loads.
        from celery import current_app as app

        self.app = app
        # Register every app's tasks now: beat looks tasks up by name and autodiscovery is lazy.
        app.loader.import_default_modules()
        self.runner = TaskRunner(max_workers=workers)
        self._ready = threading.Event()
        scheduler_cls = type(
            "BoundEmbeddedScheduler", (EmbeddedScheduler,), {"runner": self.runner, "ready": self._ready}
        )
        self.service = Service(app, max_interval=max_interval, scheduler_cls=scheduler_cls, remote_control=False)
        self._thread = threading.Thread(target=self._run, name="embedded-beat", daemon=True)

    def _run(self) -> None:
        self.app.set_current()
        try:
            self.service.start()
        except Exception:
            logger.exception("embedded beat stopped on an error")
        finally:
            connections.close_all()

    @property
    def is_running(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> EmbeddedBeat:
        global _current
        with _current_lock:
            _current = self
        self._thread.start()
        # Return once the schedule is loaded (and written back), so callers start from a settled state.
        if not self._ready.wait(timeout=15):
            logger.warning("embedded beat: the schedule did not load within 15s")
        logger.info("embedded beat started: the periodic jobs run in this process")
        return self

    def submit(self, task: Task, args: tuple | list = (), kwargs: dict | None = None, *, key: str | None = None):
        return self.runner.submit(task, args, kwargs, key=key)

    def stop(self, timeout: float = 5.0) -> None:
        global _current
        self.service.stop(wait=False)
        self._thread.join(timeout)
        self.runner.shutdown(wait=False)
        with _current_lock:
            if _current is self:
                _current = None


def current_beat() -> EmbeddedBeat | None:
    """The embedded beat running in this process, if any (new subscriptions queue their backfill on it)."""
    beat = _current
    return beat if beat is not None and beat.is_running else None


async def run_embedded_beat(stop_event: asyncio.Event, *, max_interval: float = 1.0) -> None:
    """Run the embedded beat until `stop_event` is set (for the ticker's event loop). Raises if the beat
    thread dies, so a supervisor restarts it instead of the schedule silently stopping."""
    beat = await asyncio.to_thread(lambda: EmbeddedBeat(max_interval=max_interval).start())
    try:
        while not stop_event.is_set():
            if not beat.is_running:
                raise RuntimeError("the embedded beat thread stopped unexpectedly")
            try:
                await asyncio.wait_for(stop_event.wait(), timeout=2.0)
            except TimeoutError:
                continue
    finally:
        await asyncio.to_thread(beat.stop)
