"""The task monitor: every background task of the ticker runs under it, so nothing dies silently.

A supervised task is a coroutine *factory* (called again for every restart). When the coroutine raises,
the supervisor logs the exception with the task's name and context, waits a capped exponential backoff
(with a little jitter) and starts it again; a task that ran well for `healthy_after_s` starts over from
the initial backoff. After `max_restarts` consecutive failures (None: never) it gives up and reports the
task as failed. A coroutine that returns normally is reported as finished (or restarted, if
`restart_on_exit`). `stop()` cancels everything and waits at most a deadline.

Usage in the ticker loop:
    supervisor = TaskSupervisor()
    supervisor.start("reloader", reloader.run)
    supervisor.start(f"conn {account_id}/{index}", lambda: client.run(), context={"account": label})
    ...
    supervisor.status()   # {name: TaskStatus(state, restarts, last_error, ...)} for the status page
    await supervisor.stop(deadline_s=4.0)
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

logger = logging.getLogger(__name__)

TaskState = Literal["running", "restarting", "failed", "finished", "stopped"]
TaskFactory = Callable[[], Awaitable[Any]]


@dataclass(frozen=True)
class TaskStatus:
    name: str
    state: TaskState
    restarts: int = 0
    last_error: str = ""
    last_error_at: float | None = None  # time.time()
    started_at: float | None = None  # time.time() of the current run
    next_restart_in_s: float | None = None
    context: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class _Supervised:
    name: str
    factory: TaskFactory
    context: dict[str, Any]
    restart_on_exit: bool
    status: TaskStatus
    task: asyncio.Task | None = None


class TaskSupervisor:
    def __init__(
        self,
        *,
        initial_backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        healthy_after_s: float = 60.0,
        max_restarts: int | None = None,
        jitter: float = 0.1,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s
        self.healthy_after_s = healthy_after_s
        self.max_restarts = max_restarts
        self.jitter = jitter
        self._sleep = sleep
        self._tasks: dict[str, _Supervised] = {}
        self._stopping = False

    def start(
        self,
        name: str,
        factory: TaskFactory,
        *,
        context: Mapping[str, Any] | None = None,
        restart_on_exit: bool = False,
    ) -> asyncio.Task:
        """Start supervising `factory()` under a unique `name` (must be called inside the event loop).
        `context` (e.g. account label, connection index; never secrets) goes into every log line and the
        status. Returns the supervising task."""
        if self._stopping:
            raise RuntimeError("the supervisor is stopping")
        existing = self._tasks.get(name)
        if existing is not None and existing.task is not None and not existing.task.done():
            raise ValueError(f"a task named {name!r} is already supervised")
        entry = _Supervised(
            name=name,
            factory=factory,
            context=dict(context or {}),
            restart_on_exit=restart_on_exit,
            status=TaskStatus(name=name, state="running", context=dict(context or {})),
        )
        entry.task = asyncio.create_task(self._supervise(entry), name=f"supervised:{name}")
        self._tasks[name] = entry
        return entry.task

    async def cancel(self, name: str, *, deadline_s: float = 5.0) -> None:
        """Stop one task (e.g. a connection that is no longer needed) and forget it."""
        entry = self._tasks.pop(name, None)
        if entry is None or entry.task is None:
            return
        entry.task.cancel()
        await asyncio.wait({entry.task}, timeout=deadline_s)

    def names(self) -> list[str]:
        return list(self._tasks)

    def status(self) -> dict[str, TaskStatus]:
        return {name: entry.status for name, entry in self._tasks.items()}

    def backoff(self, failures: int) -> float:
        """Delay before restart number `failures` (1-based): initial·2^(n-1), capped, ± jitter."""
        delay = min(self.max_backoff_s, self.initial_backoff_s * (2 ** max(failures - 1, 0)))
        if self.jitter:
            delay *= 1 + random.uniform(-self.jitter, self.jitter)
        return max(delay, 0.0)

    async def _supervise(self, entry: _Supervised) -> None:
        try:
            await self._run_with_restarts(entry)
        except asyncio.CancelledError:
            entry.status = replace(entry.status, state="stopped", next_restart_in_s=None)
            raise

    async def _run_with_restarts(self, entry: _Supervised) -> None:
        failures = 0
        while True:
            started = time.monotonic()
            entry.status = replace(entry.status, state="running", started_at=time.time(), next_restart_in_s=None)
            try:
                await entry.factory()
            except Exception as exc:
                if time.monotonic() - started >= self.healthy_after_s:
                    failures = 0
                failures += 1
                error = f"{type(exc).__name__}: {exc}"
                entry.status = replace(entry.status, last_error=error, last_error_at=time.time())
                if self.max_restarts is not None and failures > self.max_restarts:
                    logger.error(
                        "task %s failed %d times in a row; giving up (context %s)",
                        entry.name,
                        failures,
                        entry.context,
                        exc_info=exc,
                    )
                    entry.status = replace(entry.status, state="failed")
                    return
                delay = self.backoff(failures)
                logger.error(
                    "task %s crashed (failure %d, restart %d in %.2fs; context %s)",
                    entry.name,
                    failures,
                    entry.status.restarts + 1,
                    delay,
                    entry.context,
                    exc_info=exc,
                )
                entry.status = replace(entry.status, state="restarting", next_restart_in_s=delay)
            else:
                if not entry.restart_on_exit:
                    entry.status = replace(entry.status, state="finished")
                    return
                failures = 0
                delay = self.initial_backoff_s
                logger.warning("task %s returned; restarting in %.2fs (context %s)", entry.name, delay, entry.context)
                entry.status = replace(entry.status, state="restarting", next_restart_in_s=delay)
            await self._sleep(delay)
            entry.status = replace(entry.status, restarts=entry.status.restarts + 1)

    async def stop(self, *, deadline_s: float = 5.0) -> bool:
        """Cancel every task and wait at most `deadline_s` seconds. Returns True when all have ended;
        names the stragglers in the log otherwise."""
        self._stopping = True
        try:
            tasks = {entry.task: name for name, entry in self._tasks.items() if entry.task is not None}
            for task in tasks:
                task.cancel()
            if not tasks:
                return True
            _, pending = await asyncio.wait(tasks, timeout=deadline_s)
            if pending:
                logger.error(
                    "tasks still running %.1fs after cancel: %s", deadline_s, sorted(tasks[t] for t in pending)
                )
                return False
            return True
        finally:
            self._stopping = False
