"""What a listener that cannot bind says (issue 16, item 6d): the address, why, and the flag
that picks another port."""

from __future__ import annotations

import errno
import socket

import pytest

from poolgate.proxy.listeners import ListenError, bind_error


@pytest.mark.parametrize(("error", "flag", "text"), [
    (OSError(errno.EADDRINUSE, "Address in use"), "--admin-port",
     "cannot listen on 0.0.0.0:9901: the address is already in use; choose another port with "
     "--admin-port"),
    (OSError(errno.EACCES, "Permission denied"), "--port",
     "cannot listen on 0.0.0.0:9901: permission denied (ports below 1024 need root); choose "
     "another port with --port"),
    (OSError("Failed to bind."), "--grpc-port",
     "cannot listen on 0.0.0.0:9901: Failed to bind; choose another port with --grpc-port"),
    # A wrong address is not fixed by another port.
    (OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address"), "--port",
     "cannot listen on 0.0.0.0:9901: Cannot assign requested address"),
    (OSError(errno.EADDRINUSE, "Address in use"), None,
     "cannot listen on 0.0.0.0:9901: the address is already in use"),
])
def test_the_message_names_the_flag(error: OSError, flag: str | None, text: str) -> None:
    assert str(ListenError("0.0.0.0", 9901, error, flag)) == text


def test_naming_keeps_the_flag_the_binder_knew() -> None:
    error = OSError(errno.EADDRINUSE, "Address in use")
    named = ListenError("h", 1, error).naming("--admin-port")
    assert named.flag == "--admin-port"
    assert str(named).endswith("choose another port with --admin-port")
    assert ListenError("h", 1, error, "--port-map 80=PORT").naming("--grpc-port").flag == \
        "--port-map 80=PORT"


def test_bind_error_reports_a_port_in_use() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        error = bind_error("127.0.0.1", port)
        assert error is not None and error.errno == errno.EADDRINUSE
    assert bind_error("127.0.0.1", port) is None
