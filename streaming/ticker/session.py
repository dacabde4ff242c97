"""What the ticker does once per session day: read the previous close OI, and ask for a backfill.

Both run off the event loop: the previous close in a worker thread, the backfill in a daemon thread
(so a stopping ticker never waits for it) that a supervised task awaits.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import threading
from collections.abc import Iterable
from typing import Any

from asgiref.sync import sync_to_async

from streaming.ticker.dependencies import PrevCloseLoader, SessionBackfill
from streaming.ticker.supervisor import TaskSupervisor

log = logging.getLogger(__name__)


class PreviousCloseOI:
    """Option token -> OI at the previous session's close, looked up once per subscription per day."""

    def __init__(self, loader: PrevCloseLoader) -> None:
        self._loader = loader
        self.by_token: dict[int, float] = {}
        self._day: dt.date | None = None
        self._asked: set[int] = set()  # subscription ids already looked up for that day

    async def load(self, plan: Any, day: dt.date) -> bool:
        """Look up the plan's options not asked for yet on `day` (in a worker thread, off the hot
        path). Returns True when `day` is a new session day: `by_token` is then a new dict, which
        running chains must move their OI-change base to."""
        new_day = day != self._day
        if new_day:
            self._day = day
            self.by_token = {}
            self._asked = set()
        wanted = [
            i.subscription_id
            for i in plan.instruments.values()
            if i.instrument_type in ("CE", "PE") and i.subscription_id not in self._asked
        ]
        if wanted:
            try:
                found = await sync_to_async(self._loader, thread_sensitive=False)(subscription_ids=wanted, day=day)
            except Exception:
                log.exception("could not read the previous close OI; OI change counts from the first OI seen")
                found = {}
            self.by_token.update(found)
            self._asked.update(wanted)
        return new_day


class SessionBackfills:
    """Asks for the history backfill once per account per day, each under the task supervisor."""

    def __init__(self, backfill: SessionBackfill, supervisor: TaskSupervisor) -> None:
        self._backfill = backfill
        self._supervisor = supervisor
        self._asked: set[tuple[int, dt.date]] = set()
        self.stop = threading.Event()  # set when the ticker stops: running backfills end early

    def start_new(self, *, plan: Any, account_ids: Iterable[int], today: dt.date) -> None:
        for account_id in account_ids:
            if (account_id, today) in self._asked:
                continue
            self._asked.add((account_id, today))
            subscription_ids = [i.subscription_id for i in plan.instruments.values() if i.account_id == account_id]
            if subscription_ids:
                self._supervisor.start(
                    f"backfill:{account_id}:{today}",
                    functools.partial(self._in_thread, account_id, today, subscription_ids),
                    context={"account": account_id},
                )

    async def _in_thread(self, account_id: int, day: dt.date, subscription_ids: list[int]) -> None:
        """Run the backfill in a daemon thread and wait for it here, under the supervisor."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future = loop.create_future()
        stop = self.stop

        def settle(error: BaseException | None) -> None:
            if not done.done():
                done.set_exception(error) if error is not None else done.set_result(None)

        def target() -> None:
            error: BaseException | None = None
            try:
                self._backfill(account_id=account_id, day=day, subscription_ids=subscription_ids, stop=stop)
            except BaseException as exc:  # reported to the supervisor through the future
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop may be gone when the ticker stopped
                loop.call_soon_threadsafe(settle, error)

        threading.Thread(target=target, name=f"session-backfill-{account_id}", daemon=True).start()
        try:
            await done
        except asyncio.CancelledError:
            stop.set()
            raise


__all__ = ["PreviousCloseOI", "SessionBackfills"]
