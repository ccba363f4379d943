"""The socket guard (tests/conftest.py): loopback connections pass, any other address fails
before a packet leaves."""

from __future__ import annotations

import socket
import threading

import pytest

from tests.conftest import NonLoopbackConnection


def test_a_non_loopback_address_is_refused_before_any_packet() -> None:
    for address in (("203.0.113.7", 443), ("example.com", 80), ("10.0.0.1", 5432)):
        with socket.socket() as s, pytest.raises(NonLoopbackConnection, match="loopback"):
            s.connect(address)
    with socket.socket(socket.AF_INET6) as s, pytest.raises(NonLoopbackConnection):
        s.connect_ex(("2001:db8::1", 443, 0, 0))
    with pytest.raises(NonLoopbackConnection):
        socket.create_connection(("198.51.100.1", 80), timeout=1)


def test_loopback_connections_pass() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        accepted: list[bytes] = []

        def accept() -> None:
            conn, _ = server.accept()
            with conn:
                accepted.append(conn.recv(5))

        t = threading.Thread(target=accept)
        t.start()
        with socket.create_connection(("localhost", port), timeout=5) as c:
            c.sendall(b"hello")
        t.join(5)
    assert accepted == [b"hello"]
