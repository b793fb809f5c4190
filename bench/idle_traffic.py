"""What an open, idle page costs: requests and bytes per minute on each view.

    PYTHONPATH=src python bench/idle_traffic.py [--seconds 60]

Every view is opened in its own browser context at once, left alone to settle, then its
traffic (request and response headers and bodies, as Chromium counts them) is summed.
"""

from __future__ import annotations

import argparse
import sys
import time

from browser import chromium, demo_server

VIEWS = [("vend", "/"), ("devices", "/devices"), ("log", "/log"),
         ("transactions", "/history"), ("slots", "/stock")]


def main() -> int:
    """Open every view, wait, measure, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measuring time per view")
    parser.add_argument("--settle", type=float, default=5.0, help="time to let start-up finish")
    args = parser.parse_args()
    with demo_server() as server, chromium() as browser:
        server.app.test_client().post("/vend/1?wait=5")
        counters: dict[str, list[tuple[int, int]]] = {}
        measuring = {"on": False}
        pages = []
        for name, path in VIEWS:
            context = browser.new_context(base_url=server.url)
            page = context.new_page()
            counters[name] = []

            def finished(request, name=name):
                if measuring["on"]:
                    sizes = request.sizes()
                    sent = sizes["requestHeadersSize"] + sizes["requestBodySize"]
                    received = sizes["responseHeadersSize"] + sizes["responseBodySize"]
                    counters[name].append((sent, received))

            page.on("requestfinished", finished)
            page.goto(path)
            pages.append(page)
        deadline = time.monotonic() + args.settle
        while time.monotonic() < deadline:
            pages[0].wait_for_timeout(200)
        measuring["on"] = True
        started = time.monotonic()
        while time.monotonic() - started < args.seconds:
            pages[0].wait_for_timeout(500)  # keeps Playwright's event loop delivering events
        measuring["on"] = False
        elapsed = time.monotonic() - started
    per_minute = 60.0 / elapsed
    print(f"idle traffic over {elapsed:.0f} s per view (headers + bodies, both directions)")
    print(f"{'view':<14}{'requests/min':>14}{'requests/s':>12}{'bytes/min':>12}{'bytes/request':>15}")
    for name, samples in counters.items():
        total = sum(sent + received for sent, received in samples)
        count = len(samples)
        print(f"{name:<14}{count * per_minute:>14.1f}{count / elapsed:>12.2f}{total * per_minute:>12.0f}"
              f"{(total / count if count else 0):>15.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
