"""Layout papercuts in a real headless Chromium: a banner that moves nothing under a finger,
device ids and key fingerprints readable on a phone."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import wait_until
from test_web_browser import FakeBoard, browse, browser, expect, runtime_of  # noqa: F401 (shared fixtures)

pytestmark = pytest.mark.browser

PHONE = {"viewport": {"width": 360, "height": 740}, "is_mobile": True, "has_touch": True,
         "device_scale_factor": 2}


def box(page: Any, selector: str) -> dict[str, float]:
    return page.locator(selector).bounding_box()


@pytest.mark.parametrize("device", ["desktop", "phone"])
def test_an_alert_arriving_never_moves_the_slot_buttons(live_server, browse, device: str) -> None:  # noqa: F811
    page = browse(live_server, "/", **(PHONE if device == "phone" else {}))
    expect(page.locator('button.slot[data-slot="1"]')).to_be_visible()
    expect(page.locator("#mode")).not_to_have_text("Mode: …")
    before = {n: box(page, f'button.slot[data-slot="{n}"]') for n in (1, 2, 5)}
    client = live_server.app.test_client()
    client.post("/esp32/devices/SIMULATOR/simulate", json={"fault": "jam"})
    client.post("/vend/3?wait=5")
    wait_until(lambda: client.get("/alerts?active=1").get_json()["alerts"], message="an alert")
    # The page asks for alerts when it becomes visible; no need to wait for the 10 s poll.
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    expect(page.locator("#alerts .alert").first).to_be_visible()
    after = {n: box(page, f'button.slot[data-slot="{n}"]') for n in (1, 2, 5)}
    assert after == before
    # Nothing is hidden for good: the end of the page scrolls above the banner.
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    last = page.locator("main > *:not(#alerts)").last.bounding_box()
    banner = box(page, "#alerts")
    assert last["y"] + last["height"] <= banner["y"] + 1


def lines_of(page: Any, selector: str) -> int:
    """How many lines the text of the element takes on screen."""
    return page.evaluate("""(selector) => {
        const range = document.createRange();
        range.selectNodeContents(document.querySelector(selector));
        const tops = new Set(Array.from(range.getClientRects()).map(r => Math.round(r.top)));
        return tops.size; }""", selector)


def test_on_a_phone_a_device_id_and_its_key_fingerprint_read_on_one_line_each(
        live_server, browse):  # noqa: F811
    rt = runtime_of(live_server)
    board = FakeBoard("ESP32_246F285D3C73", rt, approved=False, authenticated=False, protocol=2,
                      fingerprint="1A2B-3C4D")
    rt.registry.add(board)
    board.start()
    try:
        page = browse(live_server, "/devices", **PHONE)
        row = '#device-rows tr[data-device="ESP32_246F285D3C73"]'
        expect(page.locator(f"{row} .fingerprint")).to_have_text("key 1A2B-3C4D")
        assert lines_of(page, f"{row} .fingerprint") == 1
        assert lines_of(page, f"{row} .device-id") == 1
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0
    finally:
        board.stop()
