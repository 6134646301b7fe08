"""The pure rules of HTTP File Upload (XEP-0363 1.1): what a slot request may contain, how a
PUT URL is signed, how quota refusals say when to retry, and how downloads are labelled.

Nothing here touches the network, the database or the disk, so all of it is unit-tested.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import unicodedata
from urllib.parse import quote

NS = "urn:xmpp:http:upload:0"
TOKEN_LENGTH = 24  # secrets.token_urlsafe(18): 144 random bits (XEP-0363 §8: unguessable)
TOKEN_RE = re.compile(rf"^[A-Za-z0-9_-]{{{TOKEN_LENGTH}}}$")
MAX_FILENAME_BYTES = 255  # a common file system limit, and the uploads.filename column
MAX_CONTENT_TYPE = 255
MAX_SIZE_DIGITS = 19  # more digits cannot be a real file size (and int() of huge strings is slow)

# RFC 9110 §5.6.2 token and §5.6.4 quoted-string (ASCII only: the value is echoed in headers).
_TCHAR = r"[!#$%&'*+.^_`|~0-9A-Za-z-]"
_QUOTED = r'"(?:[\t !#-\[\]-~]|\\[\t -~])*"'
_MEDIA_TYPE = re.compile(
    rf"^({_TCHAR}+)/({_TCHAR}+)((?:[ \t]*;[ \t]*(?:{_TCHAR}+=(?:{_TCHAR}+|{_QUOTED}))?)*)$")
# Bidirectional controls make "evil‮gpj.exe" display as "evilexe.jpg" (Unicode TR#9 / UTS #39).
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# RFC 8187 §3.2.1 attr-char, minus ALPHA / DIGIT and "-._~" which quote() never escapes.
_ATTR_SAFE = "!#$&+^`|"


def new_token() -> str:
    return secrets.token_urlsafe(18)


def check_filename(name: str | None) -> str:
    """§4: the file name of a slot request. It only ever appears in URLs and headers (files
    are stored under their random token), but it is refused when it could be mistaken for a
    path (separators, "." and ".."), carries control or bidi characters, or is too long."""
    if not name:
        raise ValueError("the filename attribute is missing or empty")
    if len(name.encode("utf-8")) > MAX_FILENAME_BYTES:
        raise ValueError(f"the filename is longer than {MAX_FILENAME_BYTES} bytes")
    if name in (".", "..") or "/" in name or "\\" in name:
        raise ValueError("the filename must not be or contain a path")
    for ch in name:
        if unicodedata.category(ch) == "Cc" or ch in _BIDI_CONTROLS:
            raise ValueError("the filename contains control characters")
    return name


def parse_size(value: str | None) -> int:
    """§4: the size attribute, a non-negative decimal number of bytes."""
    if value is None or not value:
        raise ValueError("the size attribute is missing")
    if not value.isascii() or not value.isdigit():
        raise ValueError("the size must be a non-negative integer")
    if len(value.lstrip("0")) > MAX_SIZE_DIGITS:
        return 10 ** MAX_SIZE_DIGITS  # larger than any limit: reported as file-too-large
    return int(value)


def check_content_type(value: str) -> str:
    """§4: the optional content-type attribute, a media type (RFC 9110 §8.3.1). It becomes
    the Content-Type of the download, so anything that is not one (line breaks above all)
    is refused; type and subtype are case-insensitive and returned in lower case."""
    value = value.strip(" \t")
    if len(value) > MAX_CONTENT_TYPE:
        raise ValueError(f"the content-type is longer than {MAX_CONTENT_TYPE} characters")
    m = _MEDIA_TYPE.match(value)
    if m is None:
        raise ValueError("the content-type is not a media type")
    return f"{m.group(1).lower()}/{m.group(2).lower()}{m.group(3)}"


def same_media_type(a: str, b: str) -> bool:
    """Whether two Content-Type values name the same media type and parameters (§6: the PUT
    SHOULD be refused when it does not match the slot's)."""

    def norm(v: str) -> tuple[str, ...]:
        parts = [p.strip(" \t") for p in v.split(";")]
        params = []
        for p in parts[1:]:
            if p:
                name, _, val = p.partition("=")
                params.append(f"{name.lower()}={val}")
        return (parts[0].lower(), *params)

    return norm(a) == norm(b)


def _message(token: str, filename: str, size: int, content_type: str, expires: int) -> bytes:
    # No field can contain a line break (check_filename, check_content_type), so the
    # encoding is unambiguous.
    return "\n".join(("PUT", token, filename, str(size), content_type, str(expires))).encode()


def sign(key: bytes, token: str, filename: str, size: int, content_type: str,
         expires: int) -> str:
    """HMAC-SHA-256 (RFC 2104) over everything a PUT must match: the path (token and file
    name), the size, the content type and the URL's expiry; base64url without padding."""
    mac = hmac.new(key, _message(token, filename, size, content_type, expires),
                   hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def verify(key: bytes, signature: str, token: str, filename: str, size: int,
           content_type: str, expires: int) -> bool:
    expected = sign(key, token, filename, size, content_type, expires)
    return hmac.compare_digest(expected.encode("ascii"),
                               signature.encode("ascii", errors="replace"))


def retry_at(used: int, size: int, limit: int, frees: list[tuple[int, int]]) -> int | None:
    """§5: when a refused request would fit: the time by which enough of the counted uploads
    (``frees``: (time it stops counting, bytes), oldest first) are out of the way; None if it
    never would."""
    freed = 0
    for when, nbytes in sorted(frees):
        freed += nbytes
        if used - freed + size <= limit:
            return when
    return None


def url_path(segment: str, token: str, filename: str) -> str:
    """§4: the path of the PUT and GET URLs, non-ASCII percent-encoded (RFC 3986 §2.1)."""
    return f"/{quote(segment, safe='')}/{token}/{quote(filename, safe='')}"


def inline(content_type: str) -> bool:
    """Media a browser may show in place; anything else (HTML, SVG, scripts, documents) is
    served as an attachment so that an upload cannot run as a page of this origin."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "image/svg+xml":
        return False
    return media.startswith(("image/", "audio/", "video/")) or media == "text/plain"


def content_disposition(filename: str, content_type: str) -> str:
    """RFC 6266 §4: the disposition with the original name, as an ASCII fallback and as an
    RFC 8187 UTF-8 ``filename*`` (§4.3: recipients prefer the latter)."""
    kind = "inline" if inline(content_type) else "attachment"
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\%' else "_"
                       for c in filename)
    encoded = quote(filename, safe=_ATTR_SAFE)
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"
