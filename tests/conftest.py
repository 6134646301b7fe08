"""Shared fixtures: a test CA, storage backends, and the real server process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import backends
from tests.support.ca import CertAuthority
from tests.support.server import ServerProcess


@pytest.fixture(scope="session")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertAuthority:
    return CertAuthority.create(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module", params=backends.ALL)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if name != "sqlite":
        backends.require(name)
    return name


def start_server(tmp: Path, backend: str, ca: CertAuthority, **kw: object
                 ) -> Iterator[ServerProcess]:
    """Start a server on a fresh database; stop it and insist it logged no tracebacks."""
    with backends.database(backend, tmp) as url:
        server = ServerProcess(tmp, url, ca, **kw)  # type: ignore[arg-type]
        server.start()
        try:
            yield server
        finally:
            code = server.stop()
            problems = server.tracebacks()
            assert not problems, "server logged errors:\n" + "\n".join(problems)
            assert code == 0, f"server exited with {code}:\n{server.log()[-3000:]}"


@pytest.fixture(scope="module")
def server(backend: str, ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[ServerProcess]:
    yield from start_server(tmp_path_factory.mktemp(f"srv-{backend}"), backend, ca)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if backends.SKIPPED:
        terminalreporter.write_sep("!", "STORAGE BACKENDS NOT TESTED", red=True, bold=True)
        for name in sorted(backends.SKIPPED):
            terminalreporter.write_line(
                f"  {name}: set {backends.ENV[name]} to run the suite against it", red=True)
