"""The web interface in a real headless Chromium (Debian's), driven by Playwright."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import pytest
from helpers import test_config, wait_until
from shop import shop

from vending.devices.simulator import SimulatedDevice
from vending.serving import BackgroundServer

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("VENDING_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
    "--disable-default-apps", "--disable-extensions", "--metrics-recording-only",
]
PAGES = ("/", "/devices", "/log", "/history", "/stock", "/reports")
TIMEOUT_MS = 10_000


# The simulator served it: the page says nothing was dispensed.
SIMULATED_SUCCESS = "Simulated: nothing was dispensed via SIMULATOR (simulation)"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium for the module; skipped, saying why, where none can be had."""
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed: pip install -r tests/requirements.txt")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (test.sh does it as root),"
                    " or set VENDING_CHROMIUM")
    with sync_api.sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                  args=CHROMIUM_ARGS)
        except sync_api.Error as exc:
            pytest.skip(f"Chromium at {CHROMIUM} would not start: {exc}")
        yield chromium
        chromium.close()


class Guard:
    """Records requests that would leave 127.0.0.1 (and blocks them) and console errors."""

    def __init__(self) -> None:
        self.outside: list[str] = []
        self.console_errors: list[str] = []

    def route(self, route: Any) -> None:
        url = route.request.url
        if urlsplit(url).hostname == "127.0.0.1":
            route.continue_()
        else:
            self.outside.append(url)
            route.abort()


@pytest.fixture
def browse(browser: Any) -> Iterator[Callable[..., Any]]:
    """Open a page of a served app in a fresh browser context; checks the guard at the end."""
    opened: list[tuple[Any, Guard]] = []

    def open_page(server: BackgroundServer, path: str = "/", **context_options: Any) -> Any:
        context = browser.new_context(base_url=server.url, service_workers="block",
                                      **context_options)
        guard = Guard()
        context.route("**/*", guard.route)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("console", lambda msg: msg.type == "error" and guard.console_errors.append(msg.text))
        page.on("pageerror", lambda exc: guard.console_errors.append(str(exc)))
        page.guard = guard
        opened.append((context, guard))
        page.goto(path)
        return page

    yield open_page
    for context, guard in opened:
        context.close()
        assert guard.outside == [], f"requests left 127.0.0.1: {guard.outside}"
        assert guard.console_errors == [], f"console errors: {guard.console_errors}"


@pytest.fixture
def serve(make_app: Callable[..., Any]) -> Iterator[Callable[..., BackgroundServer]]:
    """Serve an app built with some settings changed."""
    servers: list[BackgroundServer] = []

    def build(**overrides: Any) -> BackgroundServer:
        server = BackgroundServer(make_app(**overrides)).start()
        servers.append(server)
        return server

    yield build
    for server in servers:
        server.stop()


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


class FakeBoard(SimulatedDevice):
    """A simulated board that reports the approval fields a WiFi board has."""

    def __init__(self, device_id: str, runtime: Any, **fields: Any) -> None:
        super().__init__(device_id, runtime.log, motor_time=0.05, slots=runtime.config.slots)
        self.fields = fields

    def info(self) -> dict[str, Any]:
        return {**super().info(), **self.fields}


def runtime_of(server: BackgroundServer) -> Any:
    return server.app.extensions["vending"]


def slot_transactions(server: BackgroundServer, slot: int) -> list[Any]:
    page, _ = runtime_of(server).store.transactions(limit=100, offset=0, slot=slot)
    return page


def test_every_page_loads_with_no_console_error_and_no_request_leaving_localhost(live_server, browse):
    page = browse(live_server)
    expect(page.locator("#mode")).to_contain_text("simulation")
    expect(page.locator("button.slot")).to_have_count(runtime_of(live_server).config.slots)
    for path in PAGES[1:]:
        page.goto(path)
        expect(page.locator("h1")).to_be_visible()
        expect(page.locator("#mode")).to_contain_text("simulation")


def test_a_click_shows_dispensing_then_dispensed_with_the_device_and_transport(live_server, browse):
    runtime_of(live_server).simulator.motor_time = 0.6
    page = browse(live_server)
    outcome = page.locator("#slot-1-outcome")
    page.get_by_role("button", name=re.compile(r"^1\b")).click()
    expect(page.locator('button.slot[data-slot="1"]')).to_be_disabled()
    expect(outcome).to_contain_text("Dispensing")
    expect(outcome).to_have_text(SIMULATED_SUCCESS)
    expect(outcome).to_have_attribute("data-state", "dispensed")
    expect(page.locator('button.slot[data-slot="1"]')).to_be_enabled()
    expect(page.locator("#announce")).to_contain_text("Slot 1: Simulated: nothing was dispensed")


def test_pressing_a_number_key_vends_that_slot(live_server, browse):
    page = browse(live_server)
    expect(page.locator("#mode")).to_contain_text("simulation")
    page.keyboard.press("2")
    expect(page.locator("#slot-2-outcome")).to_have_text(SIMULATED_SUCCESS)
    assert [t.state for t in slot_transactions(live_server, 2)] == ["success"]


def test_a_failing_board_shows_failed_with_its_reason(live_server, browse):
    live_server.app.test_client().post("/esp32/devices/SIMULATOR/simulate", json={"fault": "jam"})
    page = browse(live_server)
    page.locator('button.slot[data-slot="4"]').click()
    outcome = page.locator("#slot-4-outcome")
    expect(outcome).to_have_attribute("data-state", "failed")
    expect(outcome).to_contain_text("Failed: the motor ran but nothing fell (jam) via SIMULATOR")
    # The reason is said once, not once more in front of a message that already says it.
    assert outcome.inner_text().count("jam") == 1


def test_a_board_that_never_confirms_shows_unknown_check_the_machine(serve, browse):
    server = serve(vend_timeout=0.5)
    server.app.test_client().post("/esp32/devices/SIMULATOR/simulate", json={"fault": "no_reply"})
    page = browse(server)
    page.locator('button.slot[data-slot="1"]').click()
    outcome = page.locator("#slot-1-outcome")
    expect(outcome).to_have_attribute("data-state", "unknown")
    expect(outcome).to_contain_text("check the machine")


def test_a_double_click_and_a_held_key_make_one_transaction_each(live_server, browse):
    runtime_of(live_server).simulator.motor_time = 0.3
    page = browse(live_server)
    page.locator('button.slot[data-slot="3"]').dblclick()
    expect(page.locator("#slot-3-outcome")).to_have_attribute("data-state", "dispensed")
    page.keyboard.down("5")
    page.keyboard.press("5")
    page.keyboard.up("5")
    expect(page.locator("#slot-5-outcome")).to_have_attribute("data-state", "dispensed")
    assert len(slot_transactions(live_server, 3)) == 1
    assert len(slot_transactions(live_server, 5)) == 1
    assert len(runtime_of(live_server).simulator.motor_runs) == 2


def test_a_vend_whose_answer_is_lost_is_retried_with_the_same_key_and_vends_once(live_server, browse):
    runtime_of(live_server).simulator.motor_time = 0.5
    page = browse(live_server)
    keys: list[str] = []

    def lose_the_first_answer(route: Any) -> None:
        keys.append(route.request.headers["idempotency-key"])
        if len(keys) == 1:
            route.fetch()  # the server gets the vend and starts it; the browser never hears back
            route.abort()
        else:
            route.continue_()

    page.route("**/vend/1?wait=0", lose_the_first_answer)
    page.locator('button.slot[data-slot="1"]').click()
    expect(page.locator("#slot-1-outcome")).to_have_text(SIMULATED_SUCCESS)
    assert len(keys) >= 2 and len(set(keys)) == 1
    assert len(slot_transactions(live_server, 1)) == 1
    assert len(runtime_of(live_server).simulator.motor_runs) == 1
    page.guard.console_errors.clear()  # the aborted request and the 409 "still running" answer


def test_a_sold_out_slot_is_shown_and_cannot_be_pressed(live_server, browse):
    runtime_of(live_server).store.update_slot(2, stock=0)
    page = browse(live_server)
    button = page.locator('button.slot[data-slot="2"]')
    expect(button).to_be_disabled()
    expect(button).to_contain_text("Sold out")
    page.keyboard.press("2")
    assert slot_transactions(live_server, 2) == []


def test_the_devices_page_selects_a_board_and_goes_back_to_automatic(live_server, browse):
    rt = runtime_of(live_server)
    second = SimulatedDevice("SIM_BENCH", rt.log, motor_time=0.05, slots=rt.config.slots)
    rt.registry.add(second)
    second.start()
    try:
        page = browse(live_server, "/devices")
        row = page.locator('tr[data-device="SIM_BENCH"]')
        expect(row).to_contain_text("simulation")
        expect(row).to_contain_text("Online")
        row.get_by_role("button", name="Use SIM_BENCH").click()
        wait_until(lambda: rt.registry.active_device_id == "SIM_BENCH", message="SIM_BENCH selected")
        expect(row.locator(".badge.active")).to_have_text("Active")
        expect(page.locator("#mode-detail")).to_contain_text("chosen by an operator")
        page.get_by_role("button", name="Choose automatically").click()
        expect(page.locator("#mode-detail")).to_contain_text("chosen automatically")
        assert rt.registry.communication_mode()["selection"] == "auto"
    finally:
        second.stop()


def test_approval_buttons_show_only_for_boards_that_have_an_approval_state(live_server, browse):
    rt = runtime_of(live_server)
    waiting = FakeBoard("WIFI_NEW", rt, approved=False, authenticated=False, protocol=1)
    trusted = FakeBoard("WIFI_OLD", rt, approved=True, authenticated=True, protocol=2)
    for device in (waiting, trusted):
        rt.registry.add(device)
        device.start()
    try:
        page = browse(live_server, "/devices")
        new_row = page.locator('tr[data-device="WIFI_NEW"]')
        expect(new_row.get_by_role("button", name="Approve WIFI_NEW")).to_be_visible()
        expect(new_row.get_by_role("button", name="Reject WIFI_NEW")).to_be_visible()
        expect(new_row).to_contain_text("unauthenticated legacy")
        old_row = page.locator('tr[data-device="WIFI_OLD"]')
        expect(old_row.get_by_role("button", name="Revoke WIFI_OLD")).to_be_visible()
        expect(old_row.get_by_role("button", name=re.compile("Approve"))).to_have_count(0)
        sim_row = page.locator('tr[data-device="SIMULATOR"]')
        expect(sim_row.get_by_role("button", name=re.compile("Approve|Revoke|Reject"))).to_have_count(0)
    finally:
        for device in (waiting, trusted):
            device.stop()


def test_the_log_updates_while_open_and_can_be_filtered_paused_and_cleared(live_server, browse):
    client = live_server.app.test_client()
    page = browse(live_server, "/log")
    log = page.locator("#log")
    client.post("/vend/1")
    expect(log.locator("li", has_text="VEND")).to_have_count(1)
    expect(log.locator("li.dir-rx", has_text="result=success")).to_have_count(1)
    page.get_by_label("Direction").select_option("rx")
    expect(log.locator("li.dir-tx")).to_be_hidden()
    expect(log.locator("li.dir-rx").first).to_be_visible()
    page.get_by_label("Direction").select_option("")
    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_role("button", name="Resume")).to_have_attribute("aria-pressed", "true")
    client.post("/vend/2")
    page.get_by_role("button", name="Resume").click()
    expect(log.locator("li", has_text="slot=2")).to_have_count(1)
    page.get_by_role("button", name="Clear").click()
    expect(log.locator("li")).to_have_count(0)
    assert runtime_of(live_server).log.since(0)[0] == []


def test_the_log_follows_new_lines_until_the_user_scrolls_up(live_server, browse):
    rt = runtime_of(live_server)
    for n in range(100):
        rt.log.add("SIMULATOR", "simulation", "info", f"line {n}")
    page = browse(live_server, "/log")
    expect(page.locator("#log li", has_text="line 99")).to_be_in_viewport()
    page.locator("#log").evaluate("el => { el.scrollTop = 0; }")
    rt.log.add("SIMULATOR", "simulation", "info", "line 100")
    expect(page.locator("#log li", has_text="line 100")).to_have_count(1)
    jump = page.get_by_role("button", name=re.compile("New lines below"))
    expect(jump).to_be_visible()
    assert page.locator("#log").evaluate("el => el.scrollTop") == 0
    jump.click()
    expect(page.locator("#log li", has_text="line 100")).to_be_in_viewport()
    expect(jump).to_be_hidden()


def test_the_log_keeps_a_bounded_number_of_rows(serve, browse):
    server = serve(log_size=600)
    rt = runtime_of(server)
    page = browse(server, "/log")
    for n in range(700):
        rt.log.add("SIMULATOR", "simulation", "info", f"line {n}")
    expect(page.locator("#log li", has_text="line 699")).to_have_count(1)
    assert page.locator("#log li").count() <= 500


def test_transactions_highlight_unknown_vends_which_can_be_marked_checked(serve, browse):
    server = serve(vend_timeout=0.3)
    client = server.app.test_client()
    client.post("/esp32/devices/SIMULATOR/simulate", json={"fault": "no_reply"})
    client.post("/vend/1?wait=5")
    client.post("/vend/2")
    page = browse(server, "/history")
    attention = page.locator("tr.attention")
    expect(attention).to_have_count(1)
    expect(attention).to_contain_text("Unknown")
    attention.get_by_role("textbox").fill("one can came out")
    attention.get_by_role("button", name="Mark checked").click()
    expect(page.locator("tr.attention")).to_have_count(0)
    expect(page.locator("tr.state-unknown")).to_contain_text("one can came out")
    page.get_by_label("State").select_option("success")
    expect(page.locator("#txn-rows tr")).to_have_count(1)
    assert page.locator("#txn-csv").get_attribute("href") == "/transactions?state=success&format=csv"
    with page.expect_download() as download:
        page.locator("#txn-csv").click()
    assert Path(download.value.path()).read_text().startswith("id,slot,state")


def test_the_slots_page_renames_and_restocks(live_server, browse):
    store = runtime_of(live_server).store
    page = browse(live_server, "/stock")
    page.get_by_label("Name of slot 2").fill("Sparkling water")
    page.locator('form.slot-edit[data-slot="2"]').get_by_label("Stock").fill("3")
    page.locator('form.slot-edit[data-slot="2"]').get_by_role("button", name="Save").click()
    expect(page.locator("#stock-message")).to_have_text("Slot 2 saved.")
    assert (store.slot(2).name, store.slot(2).stock) == ("Sparkling water", 3)
    page.locator('form.slot-restock[data-slot="2"]').get_by_label("Add items").fill("4")
    page.locator('form.slot-restock[data-slot="2"]').get_by_role("button", name="Restock").click()
    expect(page.locator("#stock-message")).to_have_text("Slot 2 now has 7.")
    assert store.slot(2).stock == 7


def test_a_phone_sized_viewport_has_no_horizontal_scroll_and_big_touch_targets(live_server, browse):
    page = browse(live_server, viewport={"width": 360, "height": 740}, is_mobile=True,
                  has_touch=True, device_scale_factor=2)
    for path in PAGES:
        page.goto(path)
        expect(page.locator("#mode")).not_to_have_text("Mode: …")
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{path} scrolls sideways by {overflow}px"
        small = page.evaluate("""() => Array.from(document.querySelectorAll(
            'main button, main a.button, main input, main select, nav a'))
            .filter(e => e.offsetParent !== null)
            .map(e => [e.textContent.trim() || e.name, e.getBoundingClientRect().height])
            .filter(([, h]) => h < 44)""")
        assert small == [], f"{path}: touch targets under 44px: {small}"


def test_a_client_from_the_network_gets_the_sign_in_page_then_can_vend(serve, browse):
    server = serve(trust_localhost=False, admin_token="a-long-operator-token-for-the-test")
    page = browse(server, "/history")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fhistory$"))
    page.get_by_label("Operator token").fill("not the token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not right")
    page.guard.console_errors.clear()  # the 401 answer to the wrong token, as intended
    page.get_by_label("Operator token").fill("a-long-operator-token-for-the-test")
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/history$"))
    page.goto("/")
    page.locator('button.slot[data-slot="1"]').click()
    expect(page.locator("#slot-1-outcome")).to_have_attribute("data-state", "dispensed")
    cookie = page.context.cookies()[0]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"


def test_a_real_wifi_board_waiting_for_approval_is_approved_from_the_page_and_vends(
        make_app, browse):
    from wifi_fixtures import start_env

    env = start_env(make_app)
    try:
        board = env.board()
        wait_until(lambda: env.status(board.device_id) == "pending_approval",
                   message="board waiting for approval")
        page = browse(env.server, "/devices")
        row = page.locator(f'tr[data-device="{board.device_id}"]')
        expect(row).to_contain_text(re.compile("pending approval", re.I))
        expect(row.locator(".fingerprint")).to_have_text(f"key {board.fingerprint}")
        # The approval alert's banner appears above the table; let the layout settle first.
        expect(page.locator("#alerts .alert").first).to_be_visible()
        row.get_by_role("button", name=f"Approve {board.device_id}").click()
        wait_until(lambda: env.device(board.device_id).approved, message="the approval to land")
        wait_until(lambda: env.status(board.device_id) == "online", timeout=15,
                   message="approved board online")
        expect(row).to_contain_text(re.compile("online", re.I))
        vend = browse(env.server, "/")
        vend.get_by_role("button", name=re.compile("^2")).click()
        expect(vend.locator("#slot-2-outcome")).to_contain_text("Dispensed")
        assert len(board.motor_runs) == 1
    finally:
        env.close()


def test_a_key_conflict_is_shown_plainly_and_the_operator_approves_the_key_the_board_shows(
        make_app, browse):
    import requests
    from wifi_fixtures import start_env

    from vending.protocol import wifi as proto

    env = start_env(make_app)
    try:
        board = env.board()
        wait_until(lambda: board.fingerprint is not None, message="board asks to pair")
        other = "cd" * 32
        requests.post(f"{env.url}/esp32/v2/pair", timeout=5,
                      json={"device_id": board.device_id, "public_key": other})
        page = browse(env.server, "/devices")
        row = page.locator(f'tr[data-device="{board.device_id}"]')
        note = row.locator(".conflict")
        expect(note).to_be_visible()
        expect(note).to_contain_text(f"Conflict: another board claims this id (key"
                                     f" {proto.key_fingerprint(other)}")
        expect(row.locator(".fingerprint")).to_have_text(f"key {board.fingerprint}")
        expect(row.get_by_role("button", name=re.compile("^Approve key"))).to_have_count(2)
        expect(row.get_by_role("button", name="Reject both boards")).to_be_visible()
        expect(page.locator("#alerts .alert").first).to_be_visible()
        row.get_by_role("button", name=f"Approve key {board.fingerprint}").click()
        expect(page.locator("#device-message")).to_contain_text("done")
        wait_until(lambda: env.device(board.device_id).approved, timeout=15,
                   message="the approval to land")
        wait_until(lambda: env.status(board.device_id) == "online", timeout=15,
                   message="the genuine board online")
        expect(note).to_have_count(0)
        assert env.rt.wifi.keys.secret(board.device_id) == board.secret
    finally:
        env.close()
@pytest.fixture
def shop_server(tmp_path: Path) -> Iterator[BackgroundServer]:
    """A served app selling through a serial board on a pty (simulated vends are no sales)."""
    with shop(tmp_path / "shop") as (app, _):
        server = BackgroundServer(app).start()
        yield server
        server.stop()


def test_prices_show_under_the_slots_and_a_sale_reaches_the_reports_page(shop_server, browse):
    client = shop_server.app.test_client()
    water = client.post("/products", json={"name": "Water", "default_price": 150}).get_json()
    client.patch("/slots/1", json={"product_id": water["id"], "capacity": 6, "par": 2, "stock": 3})
    page = browse(shop_server)
    card = page.locator('.slot-card[data-slot="1"]')
    expect(card.locator(".price")).to_have_text("1.50 EUR")
    expect(card.locator(".product")).to_have_text("Water")
    expect(card.locator(".stock")).to_have_text("3 left")
    page.locator('button.slot[data-slot="1"]').click()
    expect(page.locator("#slot-1-outcome")).to_have_attribute("data-state", "dispensed")
    expect(card.locator(".stock")).to_have_text("2 left", timeout=15_000)

    page.goto("/reports")
    expect(page.locator("#period-total .big")).to_have_text("1.50 EUR")
    expect(page.locator("#chart-by-product svg title").first).to_have_text("Sales by product")
    expect(page.locator("#chart-by-product rect")).to_have_count(1)
    expect(page.locator("#top-sellers li")).to_have_text(["Water: 1 sold, 1.50 EUR"])
    expect(page.locator("#idle-slots li")).to_have_count(4)
    expect(page.locator("#pick-list tbody tr")).to_have_text(["Water41"])


def test_the_reports_page_refills_and_records_a_collection(shop_server, browse):
    client = shop_server.app.test_client()
    client.patch("/slots/2", json={"capacity": 8, "stock": 1, "price": 100})
    client.patch("/slots/3", json={"capacity": 5, "stock": 5})
    assert client.post("/vend/2?wait=5").get_json()["status"] == "success"
    page = browse(shop_server, "/reports")
    expect(page.locator("#since-collection .big")).to_have_text("1.00 EUR")
    page.get_by_label("Note").fill("cash box emptied")
    page.get_by_role("button", name="Record a collection").click()
    expect(page.locator("#since-collection .big")).to_have_text("0.00 EUR")
    expect(page.locator("#since-collection")).to_contain_text("by local")
    expect(page.locator("#since-install .big")).to_have_text("1.00 EUR")

    boxes = page.locator("#refill-form input[name=slot]")
    expect(boxes).to_have_count(2)
    expect(page.locator('#refill-form input[value="2"]')).to_be_checked()
    expect(page.locator('#refill-form input[value="3"]')).not_to_be_checked()
    page.get_by_role("button", name="Refill chosen slots").click()
    expect(page.locator("#reports-message")).to_have_text("Refilled slot 2.")
    expect(page.locator('.refill-stock[data-slot="2"]')).to_have_text("8")
    store = runtime_of(shop_server).store
    assert (store.slot(2).stock, store.slot(3).stock) == (8, 5)
    actions = [e["action"] for e in client.get("/audit").get_json()["entries"]]
    assert "refill" in actions and "collect" in actions


def test_the_pick_list_prints_alone_on_one_page(shop_server, browse):
    client = shop_server.app.test_client()
    for number in range(1, 6):
        product = client.post("/products", json={"name": f"Product {number}",
                                                  "default_price": 100}).get_json()
        client.patch(f"/slots/{number}", json={"product_id": product["id"], "capacity": 10,
                                               "stock": number})
    page = browse(shop_server, "/reports")
    page.emulate_media(media="print")
    expect(page.locator("#pick-list table")).to_be_visible()
    expect(page.locator("#pick-list tbody tr")).to_have_count(5)
    for hidden in ("header.top", "#chart-by-product", "#refill-form", "#print-pick-list"):
        expect(page.locator(hidden)).to_be_hidden()
    pdf = page.pdf(format="A4")
    assert len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", pdf)) == 1, "the pick list takes one page"


def test_the_slots_page_adds_a_product_and_sets_a_slot_s_product_price_capacity_and_par(
        live_server, browse):
    store = runtime_of(live_server).store
    page = browse(live_server, "/stock")
    page.get_by_label("Product name").fill("Sparkling water")
    page.get_by_label("Default price (EUR)").fill("1.5")
    page.get_by_role("button", name="Add product").click()
    expect(page.locator("#products li")).to_have_text(["Sparkling water: 1.50 EUR"])
    form = page.locator('form.slot-edit[data-slot="2"]')
    form.get_by_label("Product", exact=False).first.select_option(label="Sparkling water")
    form.get_by_label("Capacity").fill("12")
    form.get_by_label("Par", exact=True).fill("4")
    form.get_by_role("button", name="Save").click()
    expect(page.locator("#stock-message")).to_have_text("Slot 2 saved.")
    expect(form.get_by_label("Price (EUR)")).to_have_value("1.50")
    slot = store.slot(2)
    assert (slot.product_name, slot.price, slot.capacity, slot.par) == ("Sparkling water", 150, 12, 4)
    form.get_by_label("Price (EUR)").fill("1,75")
    form.get_by_role("button", name="Save").click()
    expect(form.get_by_label("Price (EUR)")).to_have_value("1.75")
    assert store.slot(2).price == 175
    form.get_by_label("Price (EUR)").fill("1.755")
    form.get_by_role("button", name="Save").click()
    expect(page.locator("#stock-message")).to_have_text("Not saved: the price is not an amount.")
    assert store.slot(2).price == 175


def test_the_fleet_page_shows_a_machine_that_vended_through_the_broker(make_app, tmp_path, browse):
    """A machine publishes through a real mosquitto; the fleet server's page, in Chromium,
    shows it online with its last vend, with no console error and no request leaving, and
    fits a phone's width."""
    from brokers import Mosquitto, find_mosquitto

    from vending import create_app

    mosquitto = find_mosquitto()
    if mosquitto is None:
        pytest.skip("needs the mosquitto broker (./test.sh installs it as root)")
    pytest.importorskip("paho.mqtt.client")
    (tmp_path / "broker").mkdir()
    broker = Mosquitto(mosquitto, tmp_path / "broker").start()
    fast_mqtt = dict(mqtt_reconnect_min=0.1, mqtt_reconnect_max=0.5, mqtt_keepalive=5)
    machine = create_app(test_config(tmp_path / "machine", mqtt_url=broker.url, **fast_mqtt))
    server = BackgroundServer(make_app(fleet_url=broker.url, simulator=False, **fast_mqtt)).start()
    try:
        machine_id = machine.extensions["vending"].machine_id
        fleet = runtime_of(server).fleet
        assert machine.test_client().post("/vend/4").get_json()["status"] == "success"
        wait_until(lambda: machine_id in fleet.store.machine_ids()
                   and (fleet.store.machine(machine_id).get("last_vend") or {}).get("slot") == 4,
                   timeout=15, message="the fleet to have the machine's vend")

        page = browse(server, "/fleet")
        row = page.locator(f'tr[data-machine="{machine_id}"]')
        expect(row.locator('[data-label="State"]')).to_contain_text("online")
        expect(row.locator('[data-label="Last vend"]')).to_contain_text("slot 4")
        expect(page.locator("main")).to_contain_text("broker connected")

        phone = browse(server, "/fleet", viewport={"width": 360, "height": 740}, is_mobile=True)
        expect(phone.locator(f'tr[data-machine="{machine_id}"]')).to_be_visible()
        overflow = phone.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"/fleet scrolls sideways by {overflow}px"
    finally:
        server.stop()
        machine.extensions["vending"].stop()
        broker.stop()
