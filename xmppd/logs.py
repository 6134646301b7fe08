"""twisted.logger set-up: readable text lines or JSON, filtered by level."""

from __future__ import annotations

import sys
from typing import IO, Any

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    globalLogBeginner,
    jsonFileLogObserver,
)
from zope.interface import provider

from xmppd.config import LogConfig

_LEVELS = {"debug": LogLevel.debug, "info": LogLevel.info, "warn": LogLevel.warn,
           "error": LogLevel.error}


def text_observer(out: IO[str]) -> ILogObserver:
    @provider(ILogObserver)
    def observe(event: dict[str, Any]) -> None:
        import time

        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(event.get("log_time", 0)))
        level = event.get("log_level", LogLevel.info).name
        ns = event.get("log_namespace", "-")
        text = formatEvent(event)
        failure = event.get("log_failure")
        if failure is not None:
            text += "\n" + failure.getTraceback()
        out.write(f"{stamp}Z {level:<5} [{ns}] {text}\n")
        out.flush()

    return observe


def setup(cfg: LogConfig) -> None:
    out: IO[str] = open(cfg.file, "a", encoding="utf-8") if cfg.file else sys.stderr  # noqa: SIM115
    base = jsonFileLogObserver(out) if cfg.format == "json" else text_observer(out)
    predicate = LogLevelFilterPredicate(defaultLogLevel=_LEVELS[cfg.level])
    globalLogBeginner.beginLoggingTo([FilteringLogObserver(base, [predicate])],
                                     redirectStandardIO=False, discardBuffer=True)
