"""The upload directory: one file per upload, named by its random token (never by the name a
client chose, so no request can address a path outside the directory), in a folder per
user (so an account's files can be removed without the database rows, which account
deletion may already have dropped), written to a partial file in the same file system and
renamed into place only when complete.

Every method here blocks on the disk; the plugin runs them in the reactor's thread pool.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import IO

from plugins.upload.slots import TOKEN_RE

CHUNK = 1 << 20
PARTIAL = ".partial"
SECRET_FILE = "upload.secret"


class UploadMismatch(Exception):
    """The body did not have the size of the slot."""


class FileStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.partials = root / PARTIAL

    def user_dir(self, username: str) -> Path:
        """A fixed-length folder name per user: localparts may hold any character."""
        return self.root / hashlib.sha256(username.encode("utf-8")).hexdigest()[:32]

    def path(self, username: str, token: str) -> Path:
        if not TOKEN_RE.match(token):  # the only names ever joined to the directory
            raise ValueError(f"not an upload token: {token!r}")
        return self.user_dir(username) / token

    def prepare(self) -> None:
        """Create the directory; partial files of a previous run are incomplete: remove."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.partials.exists():
            shutil.rmtree(self.partials)
        self.partials.mkdir(mode=0o700)

    def partial_file(self) -> IO[bytes]:
        """A new file in the partial folder for a body being received (see receive())."""
        return tempfile.NamedTemporaryFile(dir=self.partials, prefix="body-", delete=False)

    def receive(self, username: str, token: str, body: IO[bytes], size: int) -> None:
        """Put a received body into place, flushed to disk and atomically renamed to the
        token's name. A body already streamed to a partial file (partial_file) is renamed;
        any other is copied into a new partial file first (O_EXCL: one writer)."""
        final = self.path(username, token)
        name = getattr(body, "name", None)
        if isinstance(name, str) and Path(name).parent == self.partials:
            received = body.seek(0, os.SEEK_END)
            try:
                if received != size:
                    raise UploadMismatch(f"{received} bytes instead of {size}")
                body.flush()
                os.fsync(body.fileno())
                final.parent.mkdir(exist_ok=True, mode=0o700)
                os.replace(name, final)
            except BaseException:
                Path(name).unlink(missing_ok=True)
                raise
            return
        partial = self.partials / token
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                body.seek(0)
                written = 0
                while True:
                    data = body.read(CHUNK)
                    if not data:
                        break
                    written += len(data)
                    if written > size:
                        raise UploadMismatch(f"more than {size} bytes")
                    out.write(data)
                if written != size:
                    raise UploadMismatch(f"{written} bytes instead of {size}")
                out.flush()
                os.fsync(out.fileno())
            final.parent.mkdir(exist_ok=True, mode=0o700)
            os.replace(partial, final)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise

    def remove(self, files: list[tuple[str, str]]) -> int:
        """Delete the files (and any partial file) of (username, token) pairs; returns how
        many existed."""
        removed = 0
        for username, token in files:
            try:
                self.path(username, token).unlink()
                removed += 1
            except (FileNotFoundError, ValueError):
                pass
            if TOKEN_RE.match(token):
                (self.partials / token).unlink(missing_ok=True)
        return removed

    def remove_user(self, username: str) -> None:
        shutil.rmtree(self.user_dir(username), ignore_errors=True)

    def stored(self) -> list[tuple[Path, str]]:
        """(path, token) of every complete file, for the orphan sweep."""
        out: list[tuple[Path, str]] = []
        for folder in os.scandir(self.root):
            if folder.is_dir(follow_symlinks=False) and folder.name != PARTIAL:
                out.extend((Path(f.path), f.name) for f in os.scandir(folder.path)
                           if TOKEN_RE.match(f.name))
        return out

    @staticmethod
    def unlink(paths: list[Path]) -> None:
        for path in paths:
            path.unlink(missing_ok=True)


def load_secret(configured: str, data_dir: Path) -> bytes:
    """The key that signs PUT URLs: the configured one, or a random one made once and kept in
    ``data_dir`` so that URLs handed out before a restart still work after it."""
    if configured:
        return configured.encode("utf-8")
    path = data_dir / SECRET_FILE
    try:
        value = path.read_text(encoding="ascii").strip()
        if value:
            return value.encode("ascii")
    except OSError:
        pass
    value = secrets.token_hex(32)
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(value + "\n")
    os.replace(tmp, path)
    return value.encode("ascii")
