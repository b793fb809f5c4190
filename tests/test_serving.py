"""The background waitress server used by tests, benchmarks and the self-check."""

from __future__ import annotations

import socket

import requests

from vending.serving import BackgroundServer


def test_stopping_the_server_ends_its_thread_and_frees_the_port_with_a_connection_open(app):
    server = BackgroundServer(app).start()
    idle = socket.create_connection(("127.0.0.1", int(server.port)))  # a keep-alive client
    assert requests.get(f"{server.url}/health", timeout=5).status_code == 200
    server.stop()
    assert not server._thread.is_alive()
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", int(server.port)))
    idle.close()


def test_a_server_that_never_started_can_be_stopped(app):
    BackgroundServer(app).stop()
