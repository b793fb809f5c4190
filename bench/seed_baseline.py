"""The earlier version, as the seed describes it: one Flask module on Flask's development server.

    python bench/seed_baseline.py PORT

A reconstruction for bench/bench_front.py, not the original code: a device list, the active
device, five slots and an in-memory communication log (a deque), answered by `GET /status`
and `GET /esp32/communication/log` from `app.run(threaded=True)`, as the seed's README shows
(/status: "System status and ESP32 info"). No database, no authentication, no snapshot.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque

from flask import Flask, jsonify, request

app = Flask(__name__)
started = time.time()
lock = threading.Lock()
devices = {
    "SIMULATOR": {"device_id": "SIMULATOR", "type": "simulation", "status": "online",
                  "last_seen": time.time(), "firmware_version": "sim"},
}
active_device = "SIMULATOR"
log: deque[dict] = deque(maxlen=1000)
for number in range(1, 301):
    log.append({"id": number, "timestamp": time.time(), "device_id": "SIMULATOR",
                "direction": ("sent", "received")[number % 2],
                "message": f"VEND:{number % 5 + 1}" if number % 2 else f"OK:{number % 5 + 1}"})


@app.route("/status")
def status():
    with lock:
        return jsonify({
            "status": "online",
            "esp32_connected": any(d["type"] != "simulation" for d in devices.values()),
            "communication_mode": devices[active_device]["type"],
            "active_device": active_device,
            "devices": list(devices.values()),
            "slots": {str(n): {"available": True} for n in range(1, 6)},
            "timestamp": time.time(),
        })


@app.route("/esp32/communication/log")
def communication_log():
    limit = int(request.args.get("limit", 50))
    since = int(request.args.get("since", 0))
    with lock:
        entries = [e for e in log if e["id"] > since][-limit:]
    return jsonify({"entries": entries, "count": len(entries)})


@app.route("/health")
def health():
    return jsonify({"status": "ok"})


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[1]), threaded=True, use_reloader=False)
