"""The pure rules of the upload plugin: slot request validation, URL signatures, retry stamps,
download labelling (XEP-0363, RFC 6266) and byte ranges / conditionals (RFC 7232, 7233)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
from pathlib import Path

import pytest

from plugins.upload import ranges, slots
from plugins.upload.files import FileStore, UploadMismatch, load_secret


# -- slot requests (XEP-0363 §4) ----------------------------------------------------------------
@pytest.mark.parametrize("name", ["photo.jpg", "très cool.txt", "a" * 255, ".bashrc",
                                  "x..y", "名前.png", "a b (1).tar.gz"])
def test_good_filenames(name: str) -> None:
    assert slots.check_filename(name) == name


@pytest.mark.parametrize("name", [None, "", ".", "..", "../x", "a/b", "a\\b", "/etc/passwd",
                                  "x\x00y", "new\nline", "tab\tname", "\x7f",
                                  "evil\u202egpj.exe", "é" * 128, "a" * 256])
def test_bad_filenames(name: str | None) -> None:
    with pytest.raises(ValueError):
        slots.check_filename(name)


def test_sizes() -> None:
    assert slots.parse_size("0") == 0
    assert slots.parse_size("23456") == 23456
    assert slots.parse_size("000123") == 123
    assert slots.parse_size("9" * 40) > 10 ** 18  # absurd but well-formed: "too large"
    assert slots.parse_size("1" + "0" * 5000) > 10 ** 18  # no slow int() of huge strings
    for bad in (None, "", "-1", "+1", "1.5", "1e3", " 1", "0x10", "\u0661\u0662", "\uff15"):
        with pytest.raises(ValueError):
            slots.parse_size(bad)


def test_content_types() -> None:
    assert slots.check_content_type("image/JPEG") == "image/jpeg"
    assert slots.check_content_type(" text/plain; charset=UTF-8 ") == "text/plain; charset=UTF-8"
    assert slots.check_content_type('text/plain;format="flowed; x"') == (
        'text/plain;format="flowed; x"')
    assert slots.check_content_type("application/vnd.api+json") == "application/vnd.api+json"
    for bad in ("", "text", "text/", "/plain", "text/plain\r\nX-Evil: 1", "text/plain; =x",
                "text/pl ain", "tëxt/plain", "a/b; c", "x/" + "y" * 300):
        with pytest.raises(ValueError):
            slots.check_content_type(bad)
    assert slots.same_media_type("Text/Plain;Charset=utf-8", "text/plain; charset=utf-8")
    assert slots.same_media_type("image/png", "image/png ")
    assert not slots.same_media_type("image/png", "image/jpeg")
    assert not slots.same_media_type("text/plain; charset=utf-8", "text/plain")


def test_signatures() -> None:
    key = b"k" * 32
    args = ("AbCdEfGhIjKlMnOpQrStUvWx", "a.txt", 10, "text/plain", 1700000000)
    sig = slots.sign(key, *args)
    # HMAC-SHA-256 over the fields, base64url without padding: checked independently
    msg = b"PUT\nAbCdEfGhIjKlMnOpQrStUvWx\na.txt\n10\ntext/plain\n1700000000"
    expected = base64.urlsafe_b64encode(hmac.new(key, msg, hashlib.sha256).digest())
    assert sig == expected.rstrip(b"=").decode()
    assert slots.verify(key, sig, *args)
    for i, other in enumerate(("AbCdEfGhIjKlMnOpQrStUvWy", "b.txt", 11, "text/html",
                               1700000001)):
        changed = list(args)
        changed[i] = other
        assert not slots.verify(key, sig, *changed)  # type: ignore[arg-type]
    assert not slots.verify(b"other", sig, *args)
    assert not slots.verify(key, sig[:-1], *args)
    assert not slots.verify(key, "ü" + sig[1:], *args)  # non-ASCII: no exception, no match


def test_tokens_are_unguessable_and_url_safe() -> None:
    tokens = {slots.new_token() for _ in range(1000)}
    assert len(tokens) == 1000
    assert all(slots.TOKEN_RE.match(t) for t in tokens)


def test_url_path_percent_encodes() -> None:
    path = slots.url_path("upload.example.org", "T" * 24, "très cool/?#.txt")
    assert path == "/upload.example.org/" + "T" * 24 + "/tr%C3%A8s%20cool%2F%3F%23.txt"
    assert path.isascii()


def test_retry_at() -> None:
    frees = [(300, 100), (100, 50), (200, 500)]  # (when it stops counting, bytes)
    assert slots.retry_at(1000, 50, 1000, frees) == 100  # the oldest 50 bytes suffice
    assert slots.retry_at(1000, 100, 1000, frees) == 200  # 50 + 500 freed by t=200
    assert slots.retry_at(1000, 600, 1000, frees) == 300
    assert slots.retry_at(1000, 700, 1000, frees) is None  # never fits
    assert slots.retry_at(1000, 1, 1000, []) is None


def test_content_disposition() -> None:
    assert slots.content_disposition("a.png", "image/png") == (
        "inline; filename=\"a.png\"; filename*=UTF-8''a.png")
    cd = slots.content_disposition('très "cool"%.html', "text/html; charset=utf-8")
    assert cd == ("attachment; filename=\"tr_s _cool__.html\"; "
                  "filename*=UTF-8''tr%C3%A8s%20%22cool%22%25.html")
    assert slots.content_disposition("x.svg", "image/svg+xml").startswith("attachment;")
    assert slots.content_disposition("x.txt", "text/plain").startswith("inline;")
    assert slots.content_disposition("x.mp4", "video/mp4").startswith("inline;")
    assert slots.content_disposition("x.pdf", "application/pdf").startswith("attachment;")


# -- ranges and conditionals (RFC 7233, RFC 7232) --------------------------------------------
@pytest.mark.parametrize("header,expected", [
    ("bytes=0-499", [(0, 499)]),
    ("bytes=500-999", [(500, 999)]),
    ("bytes=-500", [(9500, 9999)]),
    ("bytes=9500-", [(9500, 9999)]),
    ("bytes=0-0,-1", [(0, 0), (9999, 9999)]),
    ("bytes=500-600,601-999", [(500, 999)]),
    ("bytes=500-700,601-999", [(500, 999)]),
])
def test_parse_range_examples(header: str, expected: list[tuple[int, int]]) -> None:
    """RFC 7233 §2.1 and §4.1 examples, on a 10000-byte representation."""
    assert ranges.parse_range(header, 10000) == expected


def test_parse_range() -> None:
    p = ranges.parse_range
    assert p(None, 100) is None
    assert p("bytes=0-", 100) == [(0, 99)]
    assert p("bytes=50-1000", 100) == [(50, 99)]
    assert p("bytes=-1000", 100) == [(0, 99)]
    assert p("Bytes = 1-2", 100) == [(1, 2)]
    assert p("bytes=1-2,,3-4", 100) == [(1, 4)]  # empty element allowed; adjacent coalesce
    assert p("bytes=50-60, 0-9, 55-70", 100) == [(50, 70), (0, 9)]  # order of first asking
    assert p("bytes=0-5,200-300", 100) == [(0, 5)]  # unsatisfiable parts are dropped
    for ignored in ("items=0-1", "bytes", "bytes=", "bytes=a-b", "bytes=5-1", "bytes=--1",
                    "bytes=1", "bytes=0x1-2", "bytes=" + ",".join(["1-2"] * 17),
                    "bytes=0-1" + " " * 2000):
        assert p(ignored, 100) is None, ignored
    assert p("bytes=0-1", 0) is None  # an empty file is sent whole
    for unsatisfiable in ("bytes=100-", "bytes=100-200", "bytes=-0", "bytes=500-,-0"):
        with pytest.raises(ranges.Unsatisfiable):
            p(unsatisfiable, 100)


def test_conditionals() -> None:
    etag, when = '"tok"', 1_700_000_000
    date = "Tue, 14 Nov 2023 22:13:20 GMT"  # == when
    nm = ranges.not_modified
    assert nm('"tok"', None, etag, when)
    assert nm('W/"tok"', None, etag, when)  # If-None-Match compares weakly
    assert nm('"a", "b,c", "tok"', None, etag, when)
    assert nm("*", None, etag, when)
    assert not nm('"other"', date, etag, when)  # If-None-Match wins over the date
    assert nm(None, date, etag, when)
    assert nm(None, "Wed, 15 Nov 2023 00:00:00 GMT", etag, when)
    assert not nm(None, "Mon, 13 Nov 2023 00:00:00 GMT", etag, when)
    assert not nm(None, "not a date", etag, when)
    assert not nm(None, None, etag, when)
    ir = ranges.if_range_holds
    assert ir(None, etag, when)
    assert ir('"tok"', etag, when)
    assert not ir('W/"tok"', etag, when)  # If-Range compares strongly
    assert not ir('"old"', etag, when)
    assert ir(date, etag, when)
    assert not ir("Wed, 15 Nov 2023 00:00:00 GMT", etag, when)
    assert not ir("garbage", etag, when)


# -- the upload directory ----------------------------------------------------------------------
def test_file_store(tmp_path: Path) -> None:
    fs = FileStore(tmp_path / "up" / "localhost")
    fs.prepare()
    token = slots.new_token()
    fs.receive("juliet", token, io.BytesIO(b"hello"), 5)
    assert fs.path("juliet", token).read_bytes() == b"hello"
    assert fs.stored() == [(fs.path("juliet", token), token)]
    other = slots.new_token()
    for body, size in ((b"hello!", 5), (b"hell", 5)):
        with pytest.raises(UploadMismatch):
            fs.receive("juliet", other, io.BytesIO(body), size)
        assert not fs.path("juliet", other).exists()
        assert list(fs.partials.iterdir()) == []
    with pytest.raises(ValueError):
        fs.path("juliet", "../../etc")
    # a partial file left by a crash is removed at the next start
    (fs.partials / other).write_bytes(b"half")
    fs.prepare()
    assert list(fs.partials.iterdir()) == []
    assert fs.path("juliet", token).exists()
    assert fs.user_dir("juliet") != fs.user_dir("romeo")
    assert fs.user_dir("../../x").parent == fs.root  # any localpart maps to one folder
    assert fs.remove([("juliet", token), ("juliet", other), ("x", "bad/token")]) == 1
    fs.receive("romeo", token, io.BytesIO(b""), 0)
    fs.remove_user("romeo")
    assert not fs.user_dir("romeo").exists()


def test_secret_is_kept(tmp_path: Path) -> None:
    assert load_secret("configured", tmp_path) == b"configured"
    assert not (tmp_path / "upload.secret").exists()
    first = load_secret("", tmp_path)
    assert len(first) == 64 and load_secret("", tmp_path) == first
    assert (tmp_path / "upload.secret").stat().st_mode & 0o777 == 0o600
