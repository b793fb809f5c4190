"""Prometheus metrics: one CollectorRegistry per runtime, so every app a test builds starts at zero."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, Callable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .devices.base import BUSY, ONLINE, SERIAL, SIMULATION, WIFI, Device
from .events import Event

TRANSPORTS = (SERIAL, WIFI, SIMULATION)
# Vend latency, request to final state: a simulated motor takes ~1 s, a timeout 20 s.
VEND_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0)


class _DevicesCollector(Collector):
    """Devices online by transport, read from the registry at scrape time."""

    def __init__(self, devices: Callable[[], list[Device]]) -> None:
        self._devices = devices

    def collect(self) -> Iterator[GaugeMetricFamily]:
        online = dict.fromkeys(TRANSPORTS, 0)
        for device in self._devices():
            if device.status in (ONLINE, BUSY):
                online[device.transport] = online.get(device.transport, 0) + 1
        family = GaugeMetricFamily("vending_devices_online", "Boards that can vend now, by transport",
                                   labels=["transport"])
        for transport, count in sorted(online.items()):
            family.add_metric([transport], count)
        yield family


class _OutboxCollector(Collector):
    """Events waiting for the MQTT broker, read from the store's outbox at scrape time."""

    def __init__(self, counts: Callable[[], dict[str, Any]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts = self._counts()
        yield GaugeMetricFamily("vending_mqtt_outbox_queued",
                                "Events not yet acknowledged by the MQTT broker",
                                value=counts["queued"])
        oldest = counts["oldest_queued_at"]
        yield GaugeMetricFamily("vending_mqtt_outbox_oldest_age_seconds",
                                "Age of the oldest event waiting for the broker (0: none)",
                                value=max(0.0, time.time() - oldest) if oldest else 0.0)


class Metrics:
    """The controller's counters; parts call the small methods, /metrics renders `registry`."""

    def __init__(self, devices: Callable[[], list[Device]] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.vends = Counter("vending_vends", "Vends by final outcome and transport",
                             ["outcome", "transport"], registry=self.registry)
        self.vend_latency = Histogram("vending_vend_duration_seconds",
                                      "Time from a vend's request to its final state",
                                      ["transport"], buckets=VEND_BUCKETS, registry=self.registry)
        self.discovery_requests = Counter("vending_discovery_requests",
                                          "UDP discovery requests by how they were handled",
                                          ["result"], registry=self.registry)
        self.serial_reconnects = Counter("vending_serial_reconnects",
                                         "Times a USB serial board was reopened after losing it",
                                         registry=self.registry)
        self.http_requests = Counter("vending_http_requests", "HTTP requests by route and status",
                                     ["method", "route", "status"], registry=self.registry)
        if devices is not None:
            self.registry.register(_DevicesCollector(devices))

    def watch_outbox(self, counts: Callable[[], dict[str, Any]]) -> None:
        """Report the MQTT outbox (queued events and the oldest one's age) at every scrape."""
        self.registry.register(_OutboxCollector(counts))

    def vend_finished(self, event: Event) -> None:
        """A `vend.finished` listener: count the outcome and observe the latency."""
        txn = event.data["transaction"]
        transport = txn["communication"] or "none"
        self.vends.labels(outcome=txn["state"], transport=transport).inc()
        if txn["finished_at"] is not None:
            self.vend_latency.labels(transport=transport).observe(
                max(0.0, txn["finished_at"] - txn["created_at"]))

    def discovery_request(self, result: str = "answered") -> None:
        """The WiFi discovery responder saw a request (answered, ignored, rejected...)."""
        self.discovery_requests.labels(result=result).inc()

    def serial_reconnect(self, event: Event | None = None) -> None:
        """The serial supervisor reopened a board's port."""
        self.serial_reconnects.inc()

    def http_request(self, method: str, route: str, status: int) -> None:
        """One HTTP request answered; `route` is the URL rule, so the label set stays small."""
        self.http_requests.labels(method=method, route=route, status=str(status)).inc()

    def snapshot(self) -> dict[str, Any]:
        """Every sample as {name{labels}: value}, for tests and the system check."""
        values: dict[str, Any] = {}
        for family in self.registry.collect():
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                values[f"{sample.name}{{{labels}}}"] = sample.value
        return values
