"""The ticker loop's settings: cadences, the mock market's parameters, the Kite WebSocket root."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any


@dataclass
class LoopConfig:
    mode: str = "auto"
    ws_root: str = "wss://ws.kite.trade"
    greeks_interval_s: float = 0.2
    stream_interval_s: float = 0.05
    mock_interval_s: float = 0.5
    rate: float = 0.065
    mock_seed: int = 1
    mock_max_state: int = 5000
    status_interval_s: float = 1.0
    reload_check_interval_s: float | None = 30.0
    backfill_on_start: bool = True
    stop_deadline_s: float = 4.0
    iv_history_sessions: int = 252
    oi_window_minutes: float = 15.0
    chain_history_interval_s: float = 60.0
    client_options: dict[str, Any] = field(default_factory=dict)  # e.g. silence_timeout for tests

    @classmethod
    def from_settings(cls, **overrides: Any) -> LoopConfig:
        from django.conf import settings

        config = cls(
            mode=settings.TICKER_MODE,
            ws_root=settings.KITE_WS_ROOT,
            greeks_interval_s=settings.CHAIN_GREEKS_INTERVAL_MS / 1000,
            stream_interval_s=settings.CHAIN_STREAM_INTERVAL_MS / 1000,
            mock_interval_s=settings.MOCK_TICK_INTERVAL_MS / 1000,
            rate=settings.RISK_FREE_RATE,
            mock_seed=settings.MOCK_SEED,
            mock_max_state=settings.MOCK_STATE_MAX_SIZE,
            iv_history_sessions=settings.IV_HISTORY_SESSIONS,
            oi_window_minutes=settings.CHAIN_OI_WINDOW_MINUTES,
            chain_history_interval_s=settings.CHAIN_HISTORY_INTERVAL_S,
        )
        return replace(config, **overrides) if overrides else config


__all__ = ["LoopConfig"]
