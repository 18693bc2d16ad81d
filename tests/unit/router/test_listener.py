"""What the router says about a request aiohttp could not parse: specific, and never its bytes."""

from __future__ import annotations

import pytest
from aiohttp.http_exceptions import (
    BadHttpMessage,
    BadHttpMethod,
    BadStatusLine,
    HttpProcessingError,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
    TransferEncodingError,
)

from poolgate.router.listener import describe_malformed

SECRET = "sk-SECRET"


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        pytest.param(LineTooLong(f"Bearer {SECRET}", 8190), "longer than 8190 bytes",
                     id="line-too-long"),
        pytest.param(LineTooLong(f"Bearer {SECRET}"), "longer than the limit", id="no-limit"),
        pytest.param(BadHttpMethod(SECRET), "invalid method", id="method"),
        pytest.param(BadHttpMethod("\x16\x03\x01"), "TLS", id="tls"),
        pytest.param(BadStatusLine(SECRET), "invalid request line", id="request-line"),
        pytest.param(InvalidURLError(f"Invalid URL {SECRET}"), "invalid request target", id="url"),
        pytest.param(InvalidHeader(f"X-Key: {SECRET}".encode()), "invalid header field",
                     id="header"),
        pytest.param(TransferEncodingError(f"Not enough data {SECRET}"), "invalid chunked body",
                     id="chunked"),
        # llhttp's messages: a fixed reason, then the offending bytes after ":\n\n".
        pytest.param(BadHttpMessage(f"Invalid header value char:\n\n  b'{SECRET}'\n   ^"),
                     "Invalid header value char", id="llhttp-reason"),
        pytest.param(BadHttpMessage("Too many headers received"), "Too many headers received",
                     id="fixed-text"),
        pytest.param(BadHttpMessage("Pause on PRI/Upgrade:\n\n  b''\n    ^"), "HTTP/2",
                     id="http2-preface"),
        # Anything that might carry input is not repeated.
        pytest.param(BadHttpMessage(f"Invalid thing b'{SECRET}'"), "could not be parsed",
                     id="quoted-bytes"),
        pytest.param(BadHttpMessage(f"Invalid {SECRET} " + "x" * 80), "could not be parsed",
                     id="long"),
        pytest.param(BadHttpMessage(f"Bad \x00{SECRET}"), "could not be parsed", id="unprintable"),
    ],
)
def test_describe_malformed(exc: HttpProcessingError, expected: str) -> None:
    text = describe_malformed(exc)
    assert expected in text
    assert SECRET not in text
