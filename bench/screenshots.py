"""Save screenshots of the main views, desktop and phone, under docs/screenshots/.

    PYTHONPATH=src python bench/screenshots.py
"""

from __future__ import annotations

import sys
from pathlib import Path

from browser import chromium, demo_server

OUT = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
VIEWS = [("vend", "/"), ("devices", "/devices"), ("log", "/log"),
         ("transactions", "/history"), ("slots", "/stock")]
PHONE_VIEWS = {"vend", "devices", "log", "transactions"}
NAMES = ["Cola", "Sparkling water", "Orange juice", "Crisps", "Chocolate bar"]


def populate(server) -> None:
    """A few slot names, stock levels and vends of each outcome, made through the API."""
    client = server.app.test_client()
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


if __name__ == "__main__":
    sys.exit(main())
