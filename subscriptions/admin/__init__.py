"""The operator's admin: instruments, accounts (capacity, Kite login), subscriptions, holidays.

Secrets never appear: TradingAccount's form has write-only inputs and no list or message shows them.
The account and subscription lists also show the last reconcile report (what exceeds capacity, the load
per account and connection) and, when a ticker reports, its live status per account and connection.
Importing this package registers every model admin (Django's autodiscovery imports `subscriptions.admin`).
"""

from subscriptions.admin.account import TradingAccountAdmin
from subscriptions.admin.holiday import MarketHolidayAdmin
from subscriptions.admin.instrument import InstrumentAdmin
from subscriptions.admin.subscription import SubscriptionAdmin

__all__ = ["InstrumentAdmin", "MarketHolidayAdmin", "SubscriptionAdmin", "TradingAccountAdmin"]
