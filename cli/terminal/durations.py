"""Durations as kubectl writes and reads them: "45s", "3m20s", "2h", "4d"; ages of objects from their timestamps."""

from __future__ import annotations

import re
from datetime import datetime

from .errors import UsageError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


def parse_duration(text: str, *, flag: str) -> float:
    """Seconds in "90", "90s", "5m", "1h30m" or "2d"; anything else names `flag`."""
    value = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    parts = _PART.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise UsageError(f"{flag}: cannot read duration {text!r}", "write it like 30s, 5m, 1h30m or 2d")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def human_duration(seconds: float | None) -> str:
    """kubectl's short form: 45s, 3m20s, 2h5m, 4d3h (two units at most)."""
    if seconds is None:
        return ""
    left = max(0, int(round(seconds)))
    if left < 60:
        return f"{left}s"
    for big, small, big_unit, small_unit in ((86400, 3600, "d", "h"), (3600, 60, "h", "m"), (60, 1, "m", "s")):
        if left >= big:
            major, minor = divmod(left, big)
            minor //= small
            return f"{major}{big_unit}{minor}{small_unit}" if minor and major < 10 else f"{major}{big_unit}"
    return f"{left}s"  # unreachable: left >= 60 matched above


def parse_time(value: object) -> datetime | None:
    """An RFC 3339 timestamp (as the API server writes it) or None."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def seconds_since(value: object, now: datetime) -> float | None:
    when = parse_time(value)
    return None if when is None else (now - when).total_seconds()
