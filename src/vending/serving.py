"""Serving the app with waitress, in the foreground or on a background thread."""

from __future__ import annotations

import threading

from flask import Flask
from waitress.channel import HTTPChannel
from waitress.server import create_server


class BackgroundServer:
    """Waitress on its own named thread; for tests, benchmarks and self-checks."""

    def __init__(self, app: Flask, host: str = "127.0.0.1", port: int = 0, threads: int = 16,
                 max_body: int | None = None, **waitress_options: object) -> None:
        # The app's own limit unless told otherwise, as src/app.py does: waitress then refuses
        # a larger body (chunked too) before reading it, and before any handler runs.
        max_body = max_body or app.config.get("MAX_CONTENT_LENGTH")
        kwargs: dict[str, object] = {"max_request_body_size": max_body} if max_body else {}
        kwargs.update(waitress_options)
        self.app = app
        self._server = create_server(app, host=host, port=port, threads=threads,
                                     ident="vending", **kwargs)
        self.host = host
        self.port: int = self._server.effective_port  # type: ignore[union-attr]
        self._thread = threading.Thread(target=self._server.run, name=f"http-{self.port}",
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> BackgroundServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close every connection and the listening socket, then end the thread."""
        server = self._server

        def close_every_channel() -> None:
            # An empty channel map ends the loop in run(). Closing runs on the loop's own
            # thread (through its trigger), so no socket is closed under a select() waiting on it.
            for channel in list(server._map.values()):
                if isinstance(channel, HTTPChannel):
                    channel.handle_close()
                else:  # the listener and the trigger: plain close, without a warning
                    channel.close()

        if self._thread.is_alive():
            server.trigger.pull_trigger(close_every_channel)
            self._thread.join(5)
        if self._thread.is_alive() or not self._thread.ident:
            close_every_channel()
        server.task_dispatcher.shutdown()
