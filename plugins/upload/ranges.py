"""Byte ranges (RFC 7233, now RFC 9110 §14) and the conditional headers of a download
(RFC 7232, now RFC 9110 §13), as pure functions over header values.
"""

from __future__ import annotations

from email.utils import parsedate_to_datetime

MAX_RANGES = 16  # more is ignored (RFC 7233 §6.1: many small ranges are a denial of service)
MAX_HEADER = 1024

Range = tuple[int, int]  # first and last byte position, inclusive


class Unsatisfiable(Exception):
    """RFC 7233 §4.4: no range of a valid Range header overlaps the representation."""


def parse_range(header: str | None, size: int) -> list[Range] | None:
    """The ranges to send for ``Range: header`` on a representation of ``size`` bytes.

    None means "ignore the header and send everything": it is absent, malformed, in a unit
    other than bytes (RFC 7233 §3.1: MUST ignore), asks for too many ranges, or the file is
    empty. Raises Unsatisfiable when the byte-range-set is valid but none of it is
    satisfiable (§2.1), which is a 416. Overlapping or adjacent ranges are coalesced (§4.1
    allows it) and the rest keep the order in which they were asked for.
    """
    if header is None or len(header) > MAX_HEADER or size <= 0:
        return None
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip(" \t").lower() != "bytes":
        return None
    wanted: list[Range] = []
    items = [i.strip(" \t") for i in spec.split(",")]
    items = [i for i in items if i]  # RFC 7230 §7: empty list elements are allowed
    if not items or len(items) > MAX_RANGES:
        return None
    for item in items:
        first, dash, last = item.partition("-")
        if not dash or not _digits(last, allow_empty=True) or not _digits(first, True):
            return None
        if first == "":  # suffix-byte-range-spec: the last N bytes
            if last == "":
                return None
            n = int(last)
            if n > 0:
                wanted.append((max(0, size - n), size - 1))
            continue
        start = int(first)
        if last != "" and int(last) < start:
            return None  # §2.1: an invalid byte-range-spec makes the header invalid
        if start < size:
            wanted.append((start, size - 1 if last == "" else min(int(last), size - 1)))
    if not wanted:
        raise Unsatisfiable()
    return _coalesce(wanted)


def _digits(s: str, allow_empty: bool) -> bool:
    if s == "":
        return allow_empty
    return s.isascii() and s.isdigit() and len(s) <= 20


def _coalesce(ranges: list[Range]) -> list[Range]:
    order = sorted(range(len(ranges)), key=lambda i: ranges[i])
    groups: list[tuple[int, int, int]] = []  # (start, end, first index asked)
    for i in order:
        start, end = ranges[i]
        if groups and start <= groups[-1][1] + 1:
            s, e, idx = groups[-1]
            groups[-1] = (s, max(e, end), min(idx, i))
        else:
            groups.append((start, end, i))
    groups.sort(key=lambda g: g[2])
    return [(s, e) for s, e, _ in groups]


def _http_date(value: str) -> int | None:
    try:
        return int(parsedate_to_datetime(value).timestamp())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _etags(value: str) -> list[str]:
    """Entity tags of an If-None-Match list (RFC 7232 §3.2), commas inside quotes kept."""
    tags, current, quoted = [], "", False
    for ch in value:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            tags.append(current.strip(" \t"))
            current = ""
        else:
            current += ch
    tags.append(current.strip(" \t"))
    return [t for t in tags if t]


def not_modified(if_none_match: str | None, if_modified_since: str | None, etag: str,
                 last_modified: int) -> bool:
    """RFC 7232 §3.2/§3.3 with the precedence of §6: If-None-Match (weak comparison) wins;
    If-Modified-Since counts only without it."""
    if if_none_match is not None:
        value = if_none_match.strip(" \t")
        if value == "*":
            return True
        opaque = etag.removeprefix("W/")
        return any(t.removeprefix("W/") == opaque for t in _etags(value))
    if if_modified_since is not None:
        since = _http_date(if_modified_since)
        return since is not None and last_modified <= since
    return False


def if_range_holds(if_range: str | None, etag: str, last_modified: int) -> bool:
    """RFC 7233 §3.2: honour Range only if the validator still matches; an entity tag is
    compared strongly (a weak one never matches), a date must equal Last-Modified."""
    if if_range is None:
        return True
    value = if_range.strip(" \t")
    if value.startswith(('"', "W/")):
        return not value.startswith("W/") and value == etag
    when = _http_date(value)
    return when is not None and when == last_modified
