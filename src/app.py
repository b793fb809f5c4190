"""Start the vending machine controller: `python src/app.py --help` lists the options."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Sequence

from vending.allocator import limit_arenas
from vending.config import config_from_args
from vending.logs import configure_logging
from vending.startup import banner, startup_problem

logger = logging.getLogger("vending")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse options, build the app, serve until Ctrl+C or SIGTERM."""
    limit_arenas()  # before any thread is started
    configure_logging("INFO")
    try:
        config = config_from_args(argv)
    except ValueError as exc:
        logger.error("bad setting: %s", exc)
        return 2
    problem = startup_problem(config)
    if problem:
        logger.error("%s", problem)
        return 2
    configure_logging(config.log_level)
    from vending import create_app
    from vending.store.datadir import DataDirInUse

    try:
        app = create_app(config)
    except DataDirInUse as exc:
        logger.error("not starting: %s", exc)
        return 1
    runtime = app.extensions["vending"]
    token_file = None if config.admin_token else (config.data_dir / "admin_token").resolve()

    def stop_on_signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop_on_signal)
    try:
        if config.dev:
            print(banner(config, runtime.transports, token_file), flush=True)
            app.run(host=config.host, port=config.port, threaded=True, use_reloader=False)
        else:
            from vending.serving import ServerLimits, build_server

            limits = ServerLimits(
                threads=config.threads, connection_limit=config.connection_limit,
                connections_per_address=config.connections_per_address,
                request_deadline=config.request_deadline, max_body=config.max_body_bytes,
                park=config.park_polls,
            )
            try:
                server = build_server(app, config.host, config.port, limits)
            except OSError as exc:
                logger.error(
                    "cannot listen on %s:%d (%s): is another server running? Stop it or use"
                    " --port", config.host, config.port, exc,
                )
                return 1
            print(banner(config, runtime.transports, token_file), flush=True)
            server.run()
    except KeyboardInterrupt:
        pass
    finally:
        runtime.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
