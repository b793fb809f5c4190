"""GET /metrics: Prometheus text that prometheus_client's own parser reads, moving with vends."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import test_config
from prometheus_client.parser import text_string_to_metric_families

from vending import create_app


@pytest.fixture
def app(make_app):
    """Metrics are off by default; these tests turn them on."""
    return make_app(metrics=True)


@pytest.fixture
def client(app):
    return app.test_client()


def scrape(client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_parse_and_the_vend_counter_and_histogram_move_on_a_vend(client) -> None:
    before = scrape(client)
    vend_key = ("vending_vends_total", (("outcome", "success"), ("transport", "simulation")))
    count_key = ("vending_vend_duration_seconds_count", (("transport", "simulation"),))
    assert vend_key not in before

    response = client.post("/vend/1?wait=5")
    assert response.status_code == 200

    after = scrape(client)
    assert after[vend_key] == 1
    assert after[count_key] == 1
    assert after[("vending_vend_duration_seconds_sum", (("transport", "simulation"),))] > 0


def test_a_failed_vend_is_counted_under_its_outcome(client) -> None:
    client.post("/esp32/devices/SIMULATOR/simulate", json={"fault": "jam"})
    response = client.post("/vend/2?wait=5")
    assert response.status_code == 502
    after = scrape(client)
    assert after[("vending_vends_total", (("outcome", "failed"), ("transport", "simulation")))] == 1


def test_devices_online_are_reported_by_transport(client) -> None:
    samples = scrape(client)
    assert samples[("vending_devices_online", (("transport", "simulation"),))] == 1
    assert samples[("vending_devices_online", (("transport", "serial"),))] == 0
    assert samples[("vending_devices_online", (("transport", "wifi"),))] == 0


def test_http_requests_are_counted_by_route_rule_not_by_url(client) -> None:
    client.get("/vend/abc")
    client.get("/vend/def")
    client.get("/no-such-page")
    samples = scrape(client)
    assert samples[("vending_http_requests_total",
                    (("method", "GET"), ("route", "/vend/<transaction_id>"), ("status", "404")))] == 2
    assert samples[("vending_http_requests_total",
                    (("method", "GET"), ("route", "unmatched"), ("status", "404")))] == 1


def test_discovery_and_serial_reconnect_counters_exist_for_the_transports_to_feed(app, client) -> None:
    metrics = app.extensions["vending"].metrics
    metrics.discovery_request("answered")
    metrics.serial_reconnect()
    samples = scrape(client)
    assert samples[("vending_discovery_requests_total", (("result", "answered"),))] == 1
    assert samples[("vending_serial_reconnects_total", ())] == 1


def test_each_app_has_its_own_registry(make_app, tmp_path) -> None:
    first = make_app(metrics=True)
    # One server per data directory: the second app gets its own.
    second = create_app(test_config(tmp_path / "second", metrics=True))
    first.test_client().post("/vend/1?wait=5")
    samples = scrape(second.test_client())
    assert not any(name == "vending_vends_total" for name, _ in samples)
    second.extensions["vending"].stop()


def test_metrics_are_off_by_default_with_a_404_that_says_how_to_turn_them_on(make_app) -> None:
    response = make_app().test_client().get("/metrics")
    assert response.status_code == 404
    assert "--metrics" in response.get_json()["detail"]


def test_building_the_app_without_metrics_mqtt_mdns_or_webhooks_imports_none_of_their_libraries(
        tmp_path) -> None:
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from vending import Config, create_app\n"
        f"create_app(Config(data_dir=Path({str(tmp_path)!r}), port=0, serial_scan=False,"
        " discovery=False, mdns=False, start_threads=False))\n"
        "optional = ('prometheus_client', 'paho', 'zeroconf', 'requests')\n"
        "print(sorted(m for m in optional if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.strip() == "[]"
