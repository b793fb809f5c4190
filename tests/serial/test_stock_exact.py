"""Stock is exact: parallel restocks and vends through the real HTTP server lose no item."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import requests
from serial_support import wait_online

from vending.serving import BackgroundServer


def test_fifty_parallel_restocks_of_one_add_exactly_fifty(make_board, serial_app):
    board = make_board()
    app = serial_app(board.link)
    wait_online(app, board.device_id)
    server = BackgroundServer(app).start()
    try:
        assert requests.patch(f"{server.url}/slots/2", json={"stock": 0}, timeout=10).ok

        def restock(_: int) -> int:
            return requests.post(f"{server.url}/slots/2/restock", json={"quantity": 1},
                                 timeout=30).status_code

        with ThreadPoolExecutor(max_workers=25) as pool:
            statuses = list(pool.map(restock, range(50)))
        assert statuses == [200] * 50
        assert requests.get(f"{server.url}/slots", timeout=10).json()["slots"][1]["stock"] == 50
    finally:
        server.stop()


def test_restocks_during_vends_end_at_the_exact_stock(make_board, serial_app):
    board = make_board(motor_time=0.01)
    app = serial_app(board.link, device_queue_limit=100)
    wait_online(app, board.device_id)
    server = BackgroundServer(app).start()
    try:
        assert requests.patch(f"{server.url}/slots/4", json={"stock": 10}, timeout=10).ok

        def vend(_: int) -> str:
            body = requests.post(f"{server.url}/vend/4", timeout=30).json()
            return body.get("status") or body["error"]

        def restock(_: int) -> int:
            return requests.post(f"{server.url}/slots/4/restock", json={"quantity": 3},
                                 timeout=30).status_code

        with ThreadPoolExecutor(max_workers=16) as pool:
            vends = [pool.submit(vend, i) for i in range(24)]
            restocks = [pool.submit(restock, i) for i in range(20)]
            outcomes = [f.result() for f in vends]
            assert [f.result() for f in restocks] == [200] * 20
        sold = outcomes.count("success")
        assert sold + outcomes.count("sold_out") == 24, outcomes
        assert sold == len(board.motor_runs)
        stock = requests.get(f"{server.url}/slots", timeout=10).json()["slots"][3]["stock"]
        assert stock == 10 + 20 * 3 - sold
    finally:
        server.stop()
