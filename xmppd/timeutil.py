"""XEP-0082 date/time profiles: parse DateTime strictly, format the way clients parse best."""

from __future__ import annotations

import datetime
import re

_DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def parse_datetime(value: str) -> int:
    """XEP-0082 DateTime -> unix microseconds; ValueError if it is not one."""
    value = value.strip()
    if not _DATETIME.match(value):
        raise ValueError(f"not an XEP-0082 DateTime: {value!r}")
    frac = ""
    m = re.search(r"\.(\d+)", value)
    if m:  # Python accepts at most 6 fractional digits; XEP-0082 allows any number
        frac = m.group(1)
        value = value.replace("." + frac, "." + (frac + "000000")[:6])
    dt = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return int(dt.timestamp()) * 1_000_000 + dt.microsecond


def format_datetime(micros: int, fraction: bool = False) -> str:
    """Unix microseconds -> 'YYYY-MM-DDThh:mm:ss[.ffffff]Z'."""
    dt = datetime.datetime.fromtimestamp(micros / 1_000_000, datetime.UTC)
    if fraction:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micros(clock_seconds: float) -> int:
    return int(clock_seconds * 1_000_000)
