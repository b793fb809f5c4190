"""Start the app on one WSGI server, for bench/bench_front.py: the candidates, side by side.

    python bench/front_servers.py KIND PORT DATA_DIR
    KIND: ours (src/app.py's hardened waitress), ours-on-workers (the same, with every answer
    given on a worker thread, none on the I/O thread), ours-through-flask (the same as
    ours-on-workers, with the polled endpoints' fast path removed so Flask answers them as it
    did before), waitress-before
    (waitress as the project used it before: 128 threads, connection_limit 256, select()),
    cheroot, granian, gunicorn (gthread).

Every kind serves the same app (simulated board, motor time 0, no scanning, discovery or
mDNS) on 127.0.0.1 with at most 32 worker threads, except waitress-before (its old 128).
granian and gunicorn import `app` from this module, so the app is built from VENDING_*
variables at import.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from vending import Config, create_app

THREADS = 32


def build_app():
    """The app as every candidate serves it."""
    data_dir = Path(os.environ.get("FRONT_DATA_DIR") or tempfile.mkdtemp(prefix="front-bench-"))
    config = Config(data_dir=data_dir, host="127.0.0.1", port=0, serial_scan=False,
                    discovery=False, mdns=False, sim_motor_time=0.0, threads=THREADS,
                    device_queue_limit=1000)
    return create_app(config)


# granian and gunicorn load the app by import path, in their worker process.
app = build_app() if os.environ.get("FRONT_IMPORT_APP") == "1" else None


def main(argv: list[str]) -> int:
    kind, port, data_dir = argv[0], int(argv[1]), argv[2]
    os.environ["FRONT_DATA_DIR"] = data_dir
    if kind == "granian":
        from granian import Granian
        from granian.constants import Interfaces

        os.environ["FRONT_IMPORT_APP"] = "1"
        sys.path.insert(0, str(Path(__file__).parent))
        Granian("front_servers:app", address="127.0.0.1", port=port, interface=Interfaces.WSGI,
                workers=1, blocking_threads=THREADS, log_enabled=False).serve()
        return 0
    if kind == "gunicorn":
        os.environ["FRONT_IMPORT_APP"] = "1"
        os.chdir(Path(__file__).parent)
        os.execv(sys.executable, [sys.executable, "-m", "gunicorn", "-k", "gthread", "-w", "1",
                                  "--threads", str(THREADS), "-b", f"127.0.0.1:{port}",
                                  "--log-level", "warning", "front_servers:app"])
    if kind in ("ours", "ours-on-workers", "ours-through-flask"):
        from vending.allocator import limit_arenas

        limit_arenas()  # as src/app.py does first thing
    flask_app = build_app()
    if kind == "ours-through-flask":
        flask_app.wsgi_app = flask_app.wsgi_app.flask_wsgi  # web/fastpath.py's PolledEndpoints
    if kind.startswith("ours"):
        from vending.serving import ServerLimits, build_server

        limits = ServerLimits(threads=THREADS, answer_on_loop=kind == "ours")
        server = build_server(flask_app, "127.0.0.1", port, limits)
        server.run()
    elif kind == "waitress-before":
        from waitress import create_server

        server = create_server(flask_app, host="127.0.0.1", port=port, threads=128,
                               connection_limit=256, ident="vending")
        server.run()
    elif kind == "cheroot":
        from cheroot.wsgi import Server

        server = Server(("127.0.0.1", port), flask_app, numthreads=THREADS)
        try:
            server.start()
        except KeyboardInterrupt:
            server.stop()
    else:
        raise SystemExit(f"unknown server kind {kind!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
