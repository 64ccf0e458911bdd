"""Alert state: the notification log entry of one alert on one channel (Alertmanager's nflog analogue).

Pure data shared by the decision logic and the store; no I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal


@dataclass(frozen=True)
class AlertState:
    """The notification log entry of one alert on one channel (Alertmanager's nflog analogue)."""

    key: str
    version: int
    notified_level: Decimal | None
    notified_at: datetime | None
    firing: bool
    pending_until: int | None
