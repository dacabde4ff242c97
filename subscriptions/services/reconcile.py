"""The subscription reconciler: which account and connection streams each active subscription.

`reconcile_subscriptions` is called by the ticker loop (at start, on every reload, after an account
fails) and by a periodic Celery task. It
1. deactivates active subscriptions whose instrument left the registry (`delisted_at`) or expired,
   recording the reason in `deactivated_reason`;
2. assigns the rest to the usable accounts with `subscriptions.assignment.assign_instruments` (sticky,
   balanced, ≤ instruments_per_connection per connection, ≤ max_connections per account);
3. writes `account`/`connection_index` in bulk, only for rows that changed;
4. records a `ReconcileReport` (overflow, per-account used/free) that the admin and health read through
   `last_reconcile_report()`;
5. when something changed, tells running tickers after commit (unless `notify=False`).

`load_plan()` is the read the ticker loop does when the plan may have changed: plain dataclasses (no ORM
objects), so the hot path never touches the database. All functions here are synchronous ORM code:
from the event loop call them through `asgiref.sync.sync_to_async(..., thread_sensitive=True)`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from core.calendar import IST, TradingCalendar
from subscriptions.assignment import (
    AccountSlots,
    Placement,
    Plan,
    PlannedAccount,
    PlannedInstrument,
    assign_instruments,
)
from subscriptions.models import Instrument, MarketHoliday, Subscription, TradingAccount
from tickerproject.platform.reload_notifications import notify_subscriptions_changed

logger = logging.getLogger(__name__)

REPORT_CACHE_KEY = "subscriptions:last_reconcile_report"
OVERFLOW_IDS_KEPT = 5000  # the report lists at most this many overflowing subscription ids (the count is exact)

AccountFilter = Callable[[TradingAccount], bool]
USABLE_HEALTH = (TradingAccount.Health.OK, TradingAccount.Health.UNKNOWN)


# --- Which accounts may stream ---------------------------------------------------------------------


def market_is_open(*, now: dt.datetime | None = None, exchange: str = "NSE") -> bool:
    """Within NSE's session (core.calendar: weekdays 09:15-15:30 IST) and not on a MarketHoliday."""
    at = now or timezone.now()
    if not TradingCalendar().is_open(at):  # hours and weekday first: the holiday query only in session
        return False
    return not MarketHoliday.objects.filter(exchange=exchange, date=at.astimezone(IST).date()).exists()


def account_is_usable(
    account: TradingAccount, *, now: dt.datetime, healthy_only: bool = True, include_mock: bool = True
) -> bool:
    """Active; healthy (ok or unknown) unless `healthy_only=False`; a real account needs a valid token;
    mock accounts only when `include_mock`."""
    if not account.is_active:
        return False
    if account.is_mock and not include_mock:
        return False
    if healthy_only and account.health not in USABLE_HEALTH:
        return False
    return account.has_valid_token(now)


def mock_accounts_allowed(*, now: dt.datetime, mode: str | None = None) -> bool:
    """May mock accounts take instruments? `mode` (default settings.TICKER_MODE): mock → yes, live → no,
    auto → only while no real account streams live (market closed, or no real account with a valid
    token), so live and mock data never mix in one plan."""
    mode = mode or settings.TICKER_MODE
    if mode == "mock":
        return True
    if mode == "live":
        return False
    if not market_is_open(now=now):
        return True
    real = TradingAccount.objects.filter(is_active=True, is_mock=False, health__in=USABLE_HEALTH)
    return not any(account.has_valid_token(now) for account in real)


def default_account_filter(*, now: dt.datetime, healthy_only: bool = True, mode: str | None = None) -> AccountFilter:
    include_mock = mock_accounts_allowed(now=now, mode=mode)
    return lambda account: account_is_usable(account, now=now, healthy_only=healthy_only, include_mock=include_mock)


# --- The report ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountUsage:
    account_id: int
    label: str
    usable: bool
    health: str
    capacity: int  # 0 when not usable
    used: int
    per_connection: list[int] = field(default_factory=list)  # instruments on connection 0, 1, ...

    @property
    def free(self) -> int:
        return max(self.capacity - self.used, 0)


@dataclass(frozen=True)
class ReconcileReport:
    at: dt.datetime
    active: int  # active subscriptions after deactivation
    assigned: int
    kept: int
    moved: int
    placed_new: int
    changed: int  # rows whose account/connection was written
    overflow_count: int
    overflow_subscription_ids: list[int]
    deactivated: dict[str, int]  # "delisted" / "expired" → count
    deactivated_subscription_ids: list[int]
    accounts: list[AccountUsage]
    rebalanced: int = 0  # of `moved`: moved to even out the accounts (e.g. one back after a failure)

    @property
    def capacity(self) -> int:
        return sum(account.capacity for account in self.accounts)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["at"] = self.at.isoformat()
        for account, usage in zip(data["accounts"], self.accounts, strict=True):
            account["free"] = usage.free
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReconcileReport:
        accounts = [
            AccountUsage(**{key: value for key, value in account.items() if key != "free"})
            for account in data["accounts"]
        ]
        return cls(**{**data, "at": dt.datetime.fromisoformat(data["at"]), "accounts": accounts})


def last_reconcile_report() -> ReconcileReport | None:
    """The report of the latest reconcile in any process (shared cache with Redis), or None."""
    data = cache.get(REPORT_CACHE_KEY)
    if not data:
        return None
    try:
        return ReconcileReport.from_dict(data)
    except (KeyError, TypeError, ValueError):
        logger.warning("ignoring an unreadable reconcile report in the cache")
        return None


# --- Writes ------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Row:
    """The columns of an active subscription the reconciler works with (no model instances: 9,000 rows)."""

    pk: int
    account_id: int | None
    connection_index: int | None
    expiry: dt.date | None
    delisted_at: dt.datetime | None


_UPDATE_CHUNK = 900  # ids per UPDATE … WHERE id IN (…): under SQLite's bound-parameter limit


def _locked_active_rows(**filters: Any) -> list[_Row]:
    # Row locks serialise concurrent reconcilers (the ticker and the periodic task) on PostgreSQL.
    rows = (
        Subscription.objects.select_for_update(of=("self",))
        .filter(is_active=True, **filters)
        .order_by("pk")
        .values_list("pk", "account_id", "connection_index", "instrument__expiry", "instrument__delisted_at")
    )
    return [_Row(*row) for row in rows]


def _update_in_groups(groups: dict[tuple, list[int]], fields: tuple[str, ...], now: dt.datetime) -> None:
    """One UPDATE per distinct new value (per chunk of ids) instead of a CASE per row: far faster."""
    for values, ids in groups.items():
        for start in range(0, len(ids), _UPDATE_CHUNK):
            Subscription.objects.filter(pk__in=ids[start : start + _UPDATE_CHUNK]).update(
                **dict(zip(fields, values, strict=True)), updated_at=now
            )


def _deactivate(rows: list[_Row], *, now: dt.datetime, kinds: tuple[str, ...]) -> dict[str, list[int]]:
    """Deactivate the rows whose instrument left the registry ("delisted") or expired ("expired"), only
    the `kinds` asked for, recording the reason; returns the ids per kind."""
    expired_by_date: dict[dt.date, bool] = {}  # Instrument.is_expired decides, once per expiry date

    def expired(expiry: dt.date) -> bool:
        if expiry not in expired_by_date:
            expired_by_date[expiry] = Instrument(expiry=expiry).is_expired(now)
        return expired_by_date[expiry]

    done: dict[str, list[int]] = {}
    groups: dict[tuple, list[int]] = {}
    for row in rows:
        if "delisted" in kinds and row.delisted_at is not None:
            kind, reason = "delisted", f"instrument left the registry on {row.delisted_at.astimezone(IST):%Y-%m-%d}"
        elif "expired" in kinds and row.expiry is not None and expired(row.expiry):
            kind, reason = "expired", f"contract expired on {row.expiry:%Y-%m-%d}"
        else:
            continue
        done.setdefault(kind, []).append(row.pk)
        groups.setdefault((False, reason[:255], None, None), []).append(row.pk)
    _update_in_groups(groups, ("is_active", "deactivated_reason", "account_id", "connection_index"), now)
    return done


def _notify_after_commit(reason: str) -> None:
    transaction.on_commit(lambda: notify_subscriptions_changed(reason=reason))


def deactivate_expired_subscriptions(*, now: dt.datetime | None = None, notify: bool = True) -> int:
    """Deactivate active subscriptions whose contract expired (15:30 IST on expiry day); returns how many."""
    now = now or timezone.now()
    today = now.astimezone(IST).date()
    with transaction.atomic():
        done = _deactivate(_locked_active_rows(instrument__expiry__lte=today), now=now, kinds=("expired",))
        count = len(done.get("expired", []))
        if count:
            logger.info("deactivated %d expired subscription(s)", count)
            if notify:
                _notify_after_commit(f"{count} expired subscription(s) deactivated")
    return count


def reconcile_subscriptions(
    *,
    now: dt.datetime | None = None,
    healthy_only: bool = True,
    account_filter: AccountFilter | None = None,
    mode: str | None = None,
    notify: bool = True,
) -> ReconcileReport:
    """Deactivate delisted/expired subscriptions, assign the rest to usable accounts, persist the changes,
    record and return the report.

    Which accounts are usable: `account_filter` when given; otherwise `default_account_filter` (active,
    health ok/unknown unless `healthy_only=False`, a valid token for real accounts, mock accounts per
    `mock_accounts_allowed(mode=mode)`). `notify=False` for the ticker loop's own reloads (it applies the
    result itself); otherwise running tickers hear about changes after commit."""
    now = now or timezone.now()
    usable = account_filter or default_account_filter(now=now, healthy_only=healthy_only, mode=mode)
    with transaction.atomic():
        rows = _locked_active_rows()
        deactivated = _deactivate(rows, now=now, kinds=("delisted", "expired"))
        gone = {pk for ids in deactivated.values() for pk in ids}
        active = [row for row in rows if row.pk not in gone]

        accounts = list(TradingAccount.objects.order_by("label", "pk"))
        usable_accounts = [account for account in accounts if usable(account)]
        slots = [AccountSlots(a.pk, a.max_connections, a.instruments_per_connection) for a in usable_accounts]
        current = {
            row.pk: Placement(row.account_id, row.connection_index)
            if row.account_id is not None and row.connection_index is not None
            else None
            for row in active
        }
        result = assign_instruments(items=[row.pk for row in active], current=current, accounts=slots)

        moves: dict[tuple, list[int]] = {}
        for row in active:
            placement = result.placements.get(row.pk)
            target = (placement.account_id, placement.connection_index) if placement else (None, None)
            if (row.account_id, row.connection_index) != target:
                moves.setdefault(target, []).append(row.pk)
        _update_in_groups(moves, ("account_id", "connection_index"), now)
        changed = sum(len(ids) for ids in moves.values())

        usable_ids = {account.pk for account in usable_accounts}
        loads = result.loads()
        usage = [
            AccountUsage(
                account_id=account.pk,
                label=account.label,
                usable=account.pk in usable_ids,
                health=account.health,
                capacity=account.capacity if account.pk in usable_ids else 0,
                used=sum(n for p, n in loads.items() if p.account_id == account.pk),
                per_connection=[loads.get(Placement(account.pk, i), 0) for i in range(account.max_connections)]
                if account.pk in usable_ids
                else [],
            )
            for account in accounts
        ]
        report = ReconcileReport(
            at=now,
            active=len(active),
            assigned=len(result.placements),
            kept=result.kept,
            moved=result.moved,
            placed_new=result.placed_new,
            changed=changed,
            overflow_count=len(result.overflow),
            overflow_subscription_ids=list(result.overflow[:OVERFLOW_IDS_KEPT]),
            deactivated={kind: len(ids) for kind, ids in deactivated.items()},
            deactivated_subscription_ids=sorted(gone),
            accounts=usage,
            rebalanced=result.rebalanced,
        )
        if result.rebalanced:
            logger.info("rebalanced %d subscription(s) onto underused accounts", result.rebalanced)
        if result.overflow:
            logger.warning(
                "%d active subscription(s) exceed the usable capacity (%d) and are not streamed",
                len(result.overflow),
                report.capacity,
            )
        if notify and (changed or gone):
            _notify_after_commit(f"reconcile: {changed} reassigned, {len(gone)} deactivated")
    try:
        cache.set(REPORT_CACHE_KEY, report.to_dict(), timeout=None)
    except Exception as exc:  # the report is for the admin and the health check; the assignment is saved
        logger.warning("could not store the reconcile report in the cache: %s", exc)
    return report


# --- Reads for the ticker loop ---------------------------------------------------------------------

_PLAN_FIELDS = (
    "pk",
    "mode",
    "account_id",
    "connection_index",
    "instrument__instrument_token",
    "instrument__tradingsymbol",
    "instrument__exchange",
    "instrument__segment",
    "instrument__underlying",
    "instrument__instrument_type",
    "instrument__strike",
    "instrument__expiry",
    "instrument__tick_size",
    "instrument__lot_size",
)


def load_plan(*, now: dt.datetime | None = None) -> Plan:
    """What should stream now, as plain data: every active subscription (placed or not) by instrument
    token, and every active account with its clear access token (in memory only; never log it).
    Read it after `reconcile_subscriptions`; placements are whatever the last reconcile wrote."""
    now = now or timezone.now()
    instruments: dict[int, PlannedInstrument] = {}
    rows = Subscription.objects.filter(is_active=True).order_by("pk").values_list(*_PLAN_FIELDS)
    for (
        pk,
        mode,
        account_id,
        connection_index,
        token,
        symbol,
        exchange,
        segment,
        underlying,
        kind,
        strike,
        expiry,
        tick,
        lot,
    ) in rows:
        if token in instruments:
            logger.warning(
                "instrument token %s is subscribed twice (%s); keeping the older subscription", token, symbol
            )
            continue
        instruments[token] = PlannedInstrument(
            subscription_id=pk,
            instrument_token=token,
            tradingsymbol=symbol,
            exchange=exchange,
            segment=segment,
            underlying=underlying,
            instrument_type=kind,
            strike=strike,
            expiry=expiry,
            tick_size=tick,
            lot_size=lot,
            mode=mode,
            account_id=account_id,
            connection_index=connection_index,
        )
    accounts = {
        account.pk: PlannedAccount(
            account_id=account.pk,
            label=account.label,
            api_key=account.api_key,
            access_token=account.access_token,
            is_mock=account.is_mock,
            max_connections=account.max_connections,
            instruments_per_connection=account.instruments_per_connection,
            health=account.health,
            has_valid_token=account.has_valid_token(now),
        )
        for account in TradingAccount.objects.filter(is_active=True).order_by("label", "pk")
    }
    return Plan(instruments=instruments, accounts=accounts)


def plan_fingerprint() -> str:
    """A cheap digest of everything the plan depends on; the reloader's periodic check compares it to
    notice changes whose notification was lost (queryset.update(), Redis down)."""
    digest = hashlib.blake2b(digest_size=16)
    for row in (
        Subscription.objects.filter(is_active=True)
        .order_by("pk")
        .values_list("pk", "mode", "instrument_id", "account_id", "connection_index")
    ):
        digest.update(repr(row).encode())
    digest.update(b"|")
    for account_row in TradingAccount.objects.order_by("pk").values_list(
        "pk", "is_active", "is_mock", "health", "max_connections", "instruments_per_connection", "token_expires_at"
    ):
        digest.update(repr(account_row).encode())
    return digest.hexdigest()
