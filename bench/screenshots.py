"""Save screenshots of the main views, desktop and phone, under docs/screenshots/.

    PYTHONPATH=src python bench/screenshots.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from browser import chromium, demo_server

OUT = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
VIEWS = [("vend", "/"), ("devices", "/devices"), ("log", "/log"),
         ("transactions", "/history"), ("slots", "/stock")]
PHONE_VIEWS = {"vend", "devices", "log", "transactions"}
NAMES = ["Cola", "Sparkling water", "Orange juice", "Crisps", "Chocolate bar"]
PRICES = [180, 150, 220, 120, 140]


def add_products(client) -> None:
    """One product per slot with its price, capacity and par (the planogram)."""
    for number, (name, price) in enumerate(zip(NAMES, PRICES), start=1):
        product = client.post("/products", json={"name": name, "default_price": price}).get_json()
        client.patch(f"/slots/{number}", json={"name": name, "product_id": product["id"],
                                               "capacity": 20, "par": 6})


def populate(server) -> None:
    """A few slot names, stock levels and vends of each outcome, made through the API."""
    client = server.app.test_client()
    add_products(client)
    for number, name in enumerate(NAMES, start=1):
        client.patch(f"/slots/{number}", json={"name": name, "stock": [8, 12, 0, 5, 20][number - 1]})
    client.post("/vend/1?wait=5")
    client.post("/vend/2?wait=5")
    client.post("/esp32/devices/SIMULATOR/simulate", json={"fault": "jam"})
    client.post("/vend/4?wait=5")
    client.post("/esp32/devices/SIMULATOR/simulate", json={"fault": "no_reply"})
    client.post("/vend/5?wait=5")


def main() -> int:
    """Serve a populated demo, visit every view, save PNGs."""
    OUT.mkdir(parents=True, exist_ok=True)
    with demo_server(slots=5) as server, chromium() as browser:
        populate(server)
        shapes = {
            "desktop": dict(viewport={"width": 1280, "height": 800}),
            "phone": dict(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                          is_mobile=True, has_touch=True),
        }
        for shape, options in shapes.items():
            context = browser.new_context(base_url=server.url, **options)
            page = context.new_page()
            for name, path in VIEWS:
                if shape == "phone" and name not in PHONE_VIEWS:
                    continue
                page.goto(path)
                page.wait_for_function("!document.querySelector('#mode').textContent.includes('…')")
                if name == "vend":
                    page.locator('button.slot[data-slot="1"]').click()
                    page.wait_for_selector('#slot-1-outcome[data-state="dispensed"]')
                elif name == "log":
                    page.wait_for_selector("#log li")
                elif name == "devices":
                    page.wait_for_selector('tr[data-device="SIMULATOR"]')
                elif name == "transactions":
                    page.wait_for_selector("tr.attention")
                target = OUT / f"{name}-{shape}.png"
                page.screenshot(path=str(target), full_page=shape == "desktop")
                print(f"saved {target.relative_to(OUT.parent.parent)}")
            context.close()
    reports_views()
    with demo_server(trust_localhost=False, admin_token="x" * 32) as server, chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 640})
        page.goto(server.url + "/")  # not trusted: redirected to the sign-in page
        page.fill("input[name=token]", "not the token")
        page.click("button[type=submit]")
        page.wait_for_selector(".error")
        target = OUT / "sign-in-desktop.png"
        page.screenshot(path=str(target))
        print(f"saved {target.relative_to(OUT.parent.parent)}")
    return 0


def reports_views() -> None:
    """The Reports page after real sales through a serial board on a pty (simulated vends are
    no sales), on a desktop and a phone."""
    from vending.sim.serial import SerialBoardSim

    board = SerialBoardSim("ESP32_5CCF7F00D001", motor_time=0.0, seed=3).start()
    try:
        with demo_server(simulator=False, serial_ports=[board.path], slots=5) as server, \
                chromium() as browser:
            client = server.app.test_client()
            add_products(client)
            for number, stock in enumerate([14, 20, 9, 12, 18], start=1):
                client.patch(f"/slots/{number}", json={"stock": stock})
            deadline = time.monotonic() + 10
            while client.post("/vend/1?wait=5").get_json().get("status") != "success":
                if time.monotonic() > deadline:
                    raise SystemExit("the serial board did not come online")
                time.sleep(0.1)
            for slot in [1, 1, 1, 2, 2, 2, 2, 2, 3, 4, 4, 1, 2]:
                client.post(f"/vend/{slot}?wait=5")
            board.next_result("failed", "motor_fault")
            client.post("/vend/4?wait=5")
            for shape, options in (("desktop", dict(viewport={"width": 1280, "height": 800})),
                                   ("phone", dict(viewport={"width": 390, "height": 844},
                                                  device_scale_factor=2, is_mobile=True,
                                                  has_touch=True))):
                context = browser.new_context(base_url=server.url, **options)
                page = context.new_page()
                page.goto("/reports")
                page.wait_for_function(
                    "!document.querySelector('#mode').textContent.includes('…')")
                target = OUT / f"reports-{shape}.png"
                page.screenshot(path=str(target), full_page=True)
                print(f"saved {target.relative_to(OUT.parent.parent)}")
                context.close()
    finally:
        board.stop()


if __name__ == "__main__":
    sys.exit(main())
