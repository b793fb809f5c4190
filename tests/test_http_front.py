"""The HTTP front under attack and under polling: slow clients, many connections, cheap polls.

The slow-client and crash tests run the real server (`src/app.py`) in a subprocess: the first
in a network namespace with the trickling clients in a second one, the second on 127.0.0.1.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from helpers import wait_until
from lan_fixtures import namespace_pair

from vending.config import MAX_THREADS, Config
from vending.serving import ON_LOOP, BackgroundServer, NotNow

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "src" / "app.py")


# Conditional requests ----------------------------------------------------------------------

def test_status_answers_304_to_its_own_etag_and_200_with_the_new_body_after_a_change(client):
    first = client.get("/status")
    assert first.status_code == 200
    etag = first.headers["ETag"]
    assert client.get("/status", headers={"If-None-Match": etag}).status_code == 304

    changed = client.patch("/slots/2", json={"name": "Crisps"})
    assert changed.status_code == 200
    after = client.get("/status", headers={"If-None-Match": etag})
    assert after.status_code == 200
    assert after.headers["ETag"] != etag
    assert {"number": 2, "name": "Crisps"}.items() <= after.get_json()["slots"][1].items()
    assert client.get("/status", headers={"If-None-Match": after.headers["ETag"]}).status_code == 304


def test_the_log_poll_answers_304_until_a_line_is_added_then_200_with_it(app, client):
    url = "/esp32/communication/log?since=0&limit=200"
    first = client.get(url)
    assert first.status_code == 200
    etag = first.headers["ETag"]
    assert client.get(url, headers={"If-None-Match": etag}).status_code == 304

    app.extensions["vending"].log.add("SIMULATOR", "simulation", "info", "a new line")
    after = client.get(url, headers={"If-None-Match": etag})
    assert after.status_code == 200
    assert after.get_json()["entries"][-1]["message"] == "a new line"

    client.post("/esp32/communication/log/clear")
    cleared = client.get(url, headers={"If-None-Match": after.headers["ETag"]})
    assert cleared.status_code == 200 and cleared.get_json()["entries"] == []


def test_the_status_snapshot_is_built_once_while_nothing_changes(app, client, monkeypatch):
    store = app.extensions["vending"].store
    reads = []
    real_counts = store.counts
    monkeypatch.setattr(store, "counts", lambda: reads.append(1) or real_counts())
    for _ in range(5):
        assert client.get("/status").status_code == 200
    assert len(reads) == 1
    client.patch("/slots/1", json={"stock": 7})
    assert client.get("/status").get_json()["slots"][0]["stock"] == 7
    assert len(reads) == 2


# The polled endpoints' fast path ------------------------------------------------------------

def _wsgi(application, path: str, query: str = "", remote: str = "127.0.0.1",
          method: str = "GET", on_loop: bool = False,
          **headers: str) -> tuple[str, dict[str, str], bytes]:
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
               "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "5000", "SERVER_PROTOCOL": "HTTP/1.1",
               "REMOTE_ADDR": remote, "HTTP_HOST": "127.0.0.1:5000", "wsgi.version": (1, 0),
               "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(b""), "wsgi.errors": sys.stderr,
               "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False}
    environ.update({f"HTTP_{name.upper()}": value for name, value in headers.items()})
    if on_loop:
        environ[ON_LOOP] = True
    answer: dict[str, object] = {}

    def start_response(status, response_headers, exc_info=None):
        answer["status"], answer["headers"] = status, dict(response_headers)

    body = b"".join(application(environ, start_response))
    return answer["status"], answer["headers"], body  # type: ignore[return-value]


def _without_uptime(body: bytes) -> bytes:
    return re.sub(rb',"uptime":[0-9.]+', b"", body)


@pytest.fixture
def fast_and_flask(app):
    """The app's WSGI entry (the fast path in front) and the Flask app behind it, counting
    how often the fast path handed a request on."""
    front = app.wsgi_app
    flask_wsgi = front.flask_wsgi
    handed_on = []

    def counting(environ, start_response):
        handed_on.append(environ["PATH_INFO"])
        return flask_wsgi(environ, start_response)

    front.flask_wsgi = counting
    yield front, flask_wsgi, handed_on
    front.flask_wsgi = flask_wsgi


def _signed_in_cookie(app) -> str:
    return f"vending_session={app.extensions['vending_auth'].new_session()}"


def _requests_the_page_and_monitors_send(app, etags: dict[str, str]) -> list[tuple]:
    log = ("/esp32/communication/log", "since=0&limit=200")
    return [
        (("/status",), {}),
        (("/status", "", "10.9.8.7"), {}),
        (("/status", "", "10.9.8.7"), {"cookie": _signed_in_cookie(app)}),
        (("/status",), {"if_none_match": etags["status"]}),
        (("/status",), {"if_none_match": 'W/"something-else"'}),
        (log, {}),
        (log, {"if_none_match": etags["log"]}),
        (("/esp32/communication/log", "since=1&limit=2&direction=info"), {}),
        (("/esp32/communication/log", "device_id=SIMULATOR"), {}),
        ((*log, "10.9.8.7"), {"cookie": _signed_in_cookie(app)}),
    ]


def test_the_fast_path_answers_the_polls_exactly_as_flask_does_without_flask(app, fast_and_flask):
    front, flask_wsgi, handed_on = fast_and_flask
    app.extensions["vending"].log.add("SIMULATOR", "simulation", "info", "a line")
    etags = {"status": _wsgi(flask_wsgi, "/status")[1]["ETag"],
             "log": _wsgi(flask_wsgi, "/esp32/communication/log", "since=0&limit=200")[1]["ETag"]}
    for args, headers in _requests_the_page_and_monitors_send(app, etags):
        fast = _wsgi(front, *args, **headers)
        slow = _wsgi(flask_wsgi, *args, **headers)
        assert fast[:2] == slow[:2], (args, headers)
        assert _without_uptime(fast[2]) == _without_uptime(slow[2]), (args, headers)
    assert handed_on == []  # every one of them was answered below Flask


@pytest.mark.parametrize("args, headers, status", [
    (("/esp32/communication/log", "", "10.9.8.7"), {}, "401"),  # not an operator: Flask refuses
    (("/esp32/communication/log", "", "10.9.8.7"), {"accept": "text/html"}, "302"),
    (("/esp32/communication/log", "since=-1"), {}, "400"),
    (("/esp32/communication/log", "limit=5000"), {}, "400"),
    (("/esp32/communication/log", "limit=abc"), {}, "400"),
    (("/esp32/communication/log", "direction=sideways"), {}, "400"),
    (("/esp32/communication/log", "since=1&since=2"), {}, "200"),
    (("/esp32/communication/log", "device_id=esp32%2Dx"), {}, "200"),
    (("/status", "verbose=1"), {}, "200"),
    (("/status", "", "10.9.8.7"), {"authorization": "Bearer wrong"}, "200"),  # rate-limited there
    (("/esp32/communication/log", "", "10.9.8.7"), {"authorization": "Bearer wrong"}, "401"),
    (("/status", "", "127.0.0.1", "HEAD"), {}, "200"),
    (("/status", "", "127.0.0.1", "POST"), {}, "405"),
])
def test_anything_unusual_goes_on_to_flask_and_gets_flasks_answer(app, fast_and_flask, args,
                                                                 headers, status):
    front, flask_wsgi, handed_on = fast_and_flask
    fast = _wsgi(front, *args, **headers)
    assert handed_on == [args[0]]
    assert fast[0].startswith(status)
    assert _without_uptime(fast[2]) == _without_uptime(_wsgi(flask_wsgi, *args, **headers)[2])
    if status == "400":
        assert json.loads(fast[2])["error"] == "bad_request"


def test_a_store_that_cannot_be_read_gets_flasks_503_from_the_fast_path(app, fast_and_flask,
                                                                        monkeypatch):
    from vending.errors import StoreUnavailable

    front, _, handed_on = fast_and_flask
    store = app.extensions["vending"].store
    monkeypatch.setattr(store, "counts", lambda: (_ for _ in ()).throw(
        StoreUnavailable("the database is locked by another program")))
    store_revision = store.revision
    monkeypatch.setattr(type(store), "revision", property(lambda self: store_revision + 1))
    status, _, body = _wsgi(front, "/status")
    assert status.startswith("503") and json.loads(body)["error"] == "store_unavailable"
    assert handed_on == ["/status"]


def test_a_not_modified_answer_keeps_the_connection_open(live_server):
    """Waitress closed the connection after every 304 (it has no Content-Length, as the RFC
    wants), so each poll that found nothing new cost the page a new TCP connection."""
    connection = http.client.HTTPConnection("127.0.0.1", live_server.port, timeout=10)
    connection.request("GET", "/status")
    first = connection.getresponse()
    first.read()
    sock = connection.sock
    for _ in range(3):
        connection.request("GET", "/status", headers={"If-None-Match": first.getheader("ETag")})
        again = connection.getresponse()
        again.read()
        assert again.status == 304
        assert again.getheader("Connection") is None
        assert connection.sock is sock  # the same connection: http.client reconnects otherwise
    connection.request("GET", "/status", headers={"Connection": "close"})
    last = connection.getresponse()
    last.read()
    assert last.getheader("Connection") == "close"
    connection.close()


def test_answers_of_every_shape_arrive_whole_on_one_kept_alive_connection(live_server):
    """The header and a one-piece body go out in one send (KeepAliveTask.write); a file, a
    stream, a HEAD, a 304 and an error still arrive whole, in order, on one connection."""
    connection = http.client.HTTPConnection("127.0.0.1", live_server.port, timeout=10)
    etag = None
    sock = None
    for method, path in [("GET", "/status"), ("GET", "/static/app.js"),
                         ("GET", "/transactions?format=csv"), ("HEAD", "/status"),
                         ("GET", "/status"), ("GET", "/no-such-page"), ("GET", "/status")]:
        headers = {"If-None-Match": etag} if etag and path == "/status" and method == "GET" else {}
        connection.request(method, path, headers=headers)
        answer = connection.getresponse()
        body = answer.read()
        if method == "HEAD" or answer.status == 304:
            assert body == b""
        else:
            assert answer.getheader("Content-Length") is None \
                or int(answer.getheader("Content-Length")) == len(body), path
            assert body, path
        if method == "GET" and path == "/status" and answer.status == 200:
            assert json.loads(body)["service"] == "flask-vending-machine"
            etag = answer.getheader("ETag")
        assert answer.getheader("Connection") is None, path
        sock = sock or connection.sock
        assert connection.sock is sock, f"{path} closed the connection"
    connection.close()


# Ready polls answered on the I/O thread (serving.py's ON_LOOP) ------------------------------

def test_on_the_io_thread_the_fast_path_answers_only_what_is_ready_and_never_calls_flask(
        app, fast_and_flask):
    front, _, handed_on = fast_and_flask
    log = ("/esp32/communication/log", "since=0&limit=200")
    for args in [("/status",), log]:
        with pytest.raises(NotNow):  # nothing built yet: a worker builds it
            _wsgi(front, *args, on_loop=True)
        built = _wsgi(front, *args)
        on_loop = _wsgi(front, *args, on_loop=True)
        assert on_loop[:2] == built[:2] and _without_uptime(on_loop[2]) == _without_uptime(built[2])
    app.extensions["vending"].log.add("SIMULATOR", "simulation", "info", "a new line")
    for args in [("/status",), log]:
        with pytest.raises(NotNow):  # changed since it was built
            _wsgi(front, *args, on_loop=True)
    for args in [("/status", "verbose=1"), ("/status", "", "127.0.0.1", "HEAD"),
                 ("/esp32/communication/log", "", "10.9.8.7"), ("/health",)]:
        with pytest.raises(NotNow):
            _wsgi(front, *args, on_loop=True)
    assert handed_on == []  # Flask never ran for a request made on the I/O thread


def _answers_in_order(sock: socket.socket, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    """`count` responses read off one connection (each has a Content-Length or no body)."""
    buffer, answers = b"", []
    while len(answers) < count:
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            assert chunk, f"the connection closed after {len(answers)} answers"
            buffer += chunk
        head, buffer = buffer.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {name.strip().lower(): value.strip()
                   for name, _, value in (line.partition(":") for line in lines)}
        length = int(headers.get("content-length", 0))
        while len(buffer) < length:
            buffer += sock.recv(65536)
        answers.append((int(status_line.split()[1]), headers, buffer[:length]))
        buffer = buffer[length:]
    return answers


def _get(path: str, **headers: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_ready_polls_are_answered_on_the_io_thread_exactly_as_a_worker_answers_them(app):
    on_loop = BackgroundServer(app).start()
    on_workers = BackgroundServer(app, answer_on_loop=False).start()
    try:
        cookie = _signed_in_cookie(app)
        variants = [("/status", {}), ("/status", {"Host": "shop.example"}),
                    ("/status", {"Host": "shop.example", "Cookie": cookie}),
                    ("/esp32/communication/log?since=0&limit=200", {}),
                    ("/esp32/communication/log?limit=3&direction=info", {})]
        etags = {}
        for path, headers in variants:
            first = requests.get(on_loop.url + path, headers=headers, timeout=10)
            assert first.status_code == 200
            etags[path, tuple(headers.items())] = first.headers["ETag"]
        variants += [(path, {**dict(headers), "If-None-Match": etag})
                     for (path, headers), etag in etags.items()]
        for path, headers in variants:
            before = on_loop.answered_on_loop
            fast = requests.get(on_loop.url + path, headers=headers, timeout=10)
            assert on_loop.answered_on_loop == before + 1, (path, headers)
            slow = requests.get(on_workers.url + path, headers=headers, timeout=10)
            assert fast.status_code == slow.status_code, (path, headers)
            assert {k: v for k, v in fast.headers.items() if k != "Date"} \
                == {k: v for k, v in slow.headers.items() if k != "Date"}, (path, headers)
            assert _without_uptime(fast.content) == _without_uptime(slow.content), (path, headers)
        assert on_workers.answered_on_loop == 0
    finally:
        on_loop.stop()
        on_workers.stop()


def test_pipelined_requests_get_one_answer_on_the_io_thread_per_read_the_rest_in_order(
        live_server):
    """One segment full of ready polls holds the loop for one answer only: the others go to
    a worker, so one client cannot keep every other one waiting."""
    requests.get(f"{live_server.url}/status", timeout=10)  # built: the next are ready
    asked = ["/status", "/status", "/health", "/esp32/communication/log?since=0&limit=5",
             "/status?verbose=1", "/no-such-page", *["/status"] * 100, "/health"]
    before = live_server.answered_on_loop
    with socket.create_connection(("127.0.0.1", live_server.port), timeout=10) as sock:
        sock.sendall(b"".join(_get(path) for path in asked))
        answers = _answers_in_order(sock, len(asked))
        assert live_server.answered_on_loop == before + 1
    for path, (status, headers, body) in zip(asked, answers):
        assert status == (404 if path == "/no-such-page" else 200), path
        assert headers["content-type"].startswith("application/json"), path
        document = json.loads(body)
        if path.startswith("/status"):
            assert document["service"] == "flask-vending-machine", path
        elif path.startswith("/esp32"):
            assert "entries" in document
        elif path == "/health":
            assert "error" not in document


@pytest.mark.parametrize("closing", ["HTTP/1.1\r\nConnection: close", "HTTP/1.0"])
def test_nothing_sent_behind_a_poll_that_closes_the_connection_is_run(app, live_server, closing):
    """The poll is answered on the I/O thread while waitress is still parsing the rest of the
    read: a vend pipelined behind it must be dropped, as it is behind any closing answer.
    The client reads slowly, so the answer is still being sent while a worker could run it."""
    rt = app.extensions["vending"]
    for index in range(1000):
        rt.log.add("SIMULATOR", "simulation", "info", f"line {index} " + "x" * 100)
    poll = "/esp32/communication/log?limit=1000"
    requests.get(live_server.url + poll, timeout=10)  # built: the poll is ready
    before = live_server.answered_on_loop
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", live_server.port))
        sock.sendall(f"GET {poll} {closing}\r\nHost: 127.0.0.1\r\n\r\n".encode()
                     + b"POST /vend/1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
                     + _get("/status"))
        time.sleep(0.5)  # a vend wrongly run would be under way by now
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert live_server.answered_on_loop == before + 1
    assert received.count(b"HTTP/1.") == 1 and b'"entries":[' in received
    assert sum(rt.store.counts().values()) == 0, rt.store.counts()
    assert rt.simulator.motor_runs == []


def test_a_large_answer_is_left_to_a_worker(app, live_server):
    """Past waitress's 1 MiB an unsent answer is written to a temporary file; the I/O thread
    gives none over LOOP_ANSWER_LIMIT."""
    from vending.serving import LOOP_ANSWER_LIMIT

    rt = app.extensions["vending"]
    for index in range(1000):
        rt.log.add("SIMULATOR", "simulation", "info", f"line {index} " + "\u00e9" * 100)
    big = f"{live_server.url}/esp32/communication/log?limit=1000"
    first = requests.get(big, timeout=10)
    assert len(first.content) > LOOP_ANSWER_LIMIT
    before = live_server.answered_on_loop
    again = requests.get(big, timeout=10)
    assert live_server.answered_on_loop == before  # declined on the loop: a worker sent it
    assert again.status_code == 200 and again.content == first.content
    assert requests.get(big, headers={"If-None-Match": first.headers["ETag"]},
                        timeout=10).status_code == 304
    assert live_server.answered_on_loop == before + 1  # a 304 has no body to hold


def test_the_io_thread_never_reads_the_database_nor_builds_a_body(app, live_server, monkeypatch):
    rt = app.extensions["vending"]
    readers: list[str] = []

    def on_thread(function):
        def recorded(*args, **kwargs):
            readers.append(threading.current_thread().name)
            return function(*args, **kwargs)
        return recorded

    for name in ("counts", "slots"):
        monkeypatch.setattr(rt.store, name, on_thread(getattr(rt.store, name)))
    monkeypatch.setattr(rt.log, "since", on_thread(rt.log.since))
    log = f"{live_server.url}/esp32/communication/log?since=0&limit=200"
    for round_no in range(3):
        rt.log.add("SIMULATOR", "simulation", "info", f"round {round_no}")
        for _ in range(3):
            assert requests.get(f"{live_server.url}/status", timeout=10).status_code == 200
            assert requests.get(log, timeout=10).status_code == 200
    assert live_server.answered_on_loop >= 12  # the second and third of each, at least
    assert readers and not [name for name in readers if name == f"http-{live_server.port}"]


def test_a_client_that_pipelines_large_answers_and_never_reads_cannot_stall_the_server(
        app, live_server):
    """Waitress makes a writer wait while a connection has over 16 MiB unsent. Answers made
    on the I/O thread must never wait so (the thread that would send them is the one
    waiting): here a hundred 150 KiB log answers are asked for at once and never read."""
    rt = app.extensions["vending"]
    for index in range(1000):
        rt.log.add("SIMULATOR", "simulation", "info", f"line {index} " + "x" * 100)
    big = "/esp32/communication/log?limit=1000"
    assert 150_000 < len(requests.get(live_server.url + big, timeout=10).content) < 256 * 1024
    greedy = socket.create_connection(("127.0.0.1", live_server.port), timeout=10)
    try:
        greedy.setblocking(False)
        burst = _get(big) * 2000
        sent = 0
        try:
            while sent < len(burst):
                sent += greedy.send(burst[sent:])
        except BlockingIOError:  # the server stopped reading: enough is queued
            pass
        assert sent > 100 * len(_get(big))
        wait_until(lambda: live_server.answered_on_loop >= 1, timeout=10,
                   message="the first large answer to be made on the I/O thread")
        assert requests.get(f"{live_server.url}/status", timeout=10).status_code == 200
        vend = requests.post(f"{live_server.url}/vend/1?wait=5", timeout=10)
        assert vend.status_code == 200 and vend.json()["status"] == "success", vend.text
    finally:
        greedy.close()


# Settings that could crash the server ------------------------------------------------------

@pytest.mark.parametrize("threads", [0, 3, MAX_THREADS + 1, 100000])
def test_thread_counts_outside_the_allowed_range_are_refused(tmp_path, threads):
    with pytest.raises(ValueError, match="threads"):
        Config(data_dir=tmp_path, threads=threads)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start_app(argv: list[str], data_dir: Path, prefix: list[str] | None = None,
               ) -> subprocess.Popen:
    env = dict(os.environ, VENDING_SIM_MOTOR_TIME="0", PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [*(prefix or []), sys.executable, APP, "--no-mdns", "--no-discovery", "--no-serial-scan",
         "--data-dir", str(data_dir), "--log-level", "WARNING", *argv],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )


def _stop(process: subprocess.Popen) -> str:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    return process.stdout.read() if process.stdout else ""


def test_a_thousand_connections_under_the_largest_thread_setting_do_not_crash_it(tmp_path):
    port = _free_port()
    server = _start_app(["--host", "127.0.0.1", "--port", str(port), "--threads", str(MAX_THREADS)],
                        tmp_path)
    url = f"http://127.0.0.1:{port}"
    held: list[socket.socket] = []
    try:
        wait_until(lambda: _answers(f"{url}/health"), timeout=30, interval=0.1,
                   message="the server to start")
        # Enough connections that the server's descriptors go past 1023 (select()'s limit),
        # each with a request in flight, then a second wave left idle.
        for index in range(1100):
            conn = socket.create_connection(("127.0.0.1", port), timeout=10)
            if index < 300:
                conn.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            held.append(conn)
        answer = requests.get(f"{url}/status", timeout=20)
        assert answer.status_code == 200
        vend = requests.post(f"{url}/vend/1", timeout=20)
        assert vend.status_code == 200, vend.text
        assert server.poll() is None, "the server died"
    finally:
        for conn in held:
            conn.close()
        output = _stop(server)
    assert "Traceback" not in output, output


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


# Slow clients from other addresses ---------------------------------------------------------

TRICKLER = textwrap.dedent("""
    import socket, sys, time
    server, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    sources = sys.argv[4].split(",")
    partial = b"GET /status HTTP/1.1\\r\\nHost: vending\\r\\nX-Slow: "

    def connect(index):
        s = socket.socket()
        s.setblocking(False)
        s.bind((sources[index % len(sources)], 0))
        try:
            s.connect((server, port))
        except BlockingIOError:
            pass
        return [s, 0]

    conns = [connect(i) for i in range(count)]
    rounds = 0
    while True:
        for index, entry in enumerate(conns):
            s, sent = entry
            try:
                s.send(partial[sent:sent + 1] if sent < len(partial) else b"a")
                entry[1] += 1
            except BlockingIOError:
                pass
            except OSError:  # closed by the server: come back, as an attacker would
                s.close()
                conns[index] = connect(index)
        rounds += 1
        if rounds == 3:
            print("trickling", flush=True)
        time.sleep(1.0)
""")

OPERATOR = textwrap.dedent("""
    import json, sys, time, requests
    url = sys.argv[1]
    started = time.monotonic()
    result = {}
    try:
        result["status"] = requests.get(url + "/status", timeout=10).status_code
        result["status_seconds"] = round(time.monotonic() - started, 3)
        vend = requests.post(url + "/vend/1", timeout=20)
        result["vend"] = vend.status_code
        result["vend_state"] = vend.json().get("status")
    except requests.RequestException as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(result), flush=True)
""")


@pytest.fixture
def server_and_attacker() -> Iterator[tuple[str, str, list[str]]]:
    """Two namespaces joined by a veth pair: the server's at .1, ten attacker addresses."""
    net = f"10.{200 + os.getpid() % 50}.{os.getpid() % 250}"
    sources = [f"{net}.{host}" for host in range(10, 20)]
    with namespace_pair("fr", [f"{net}.1/24"], [f"{source}/24" for source in sources]) as (
            server_ns, attacker_ns):
        yield server_ns, attacker_ns, [f"{net}.1", *sources]


def test_a_thousand_trickling_connections_from_the_lan_leave_the_operator_and_vends_working(
        server_and_attacker, tmp_path):
    server_ns, attacker_ns, (server_ip, *sources) = server_and_attacker
    port = 5080
    server = _start_app(["--host", "0.0.0.0", "--port", str(port)], tmp_path,
                        prefix=["ip", "netns", "exec", server_ns])
    inside_server = ["ip", "netns", "exec", server_ns, sys.executable]
    attacker = None
    try:
        def started() -> bool:
            probe = subprocess.run([*inside_server, "-c", OPERATOR, f"http://127.0.0.1:{port}"],
                                   capture_output=True, text=True, timeout=60)
            return probe.returncode == 0 and '"status": 200' in probe.stdout

        wait_until(started, timeout=60, interval=0.2, message="the server to start")
        attacker = subprocess.Popen(
            ["ip", "netns", "exec", attacker_ns, sys.executable, "-c", TRICKLER, server_ip,
             str(port), "1000", ",".join(sources)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert attacker.stdout is not None
        line = attacker.stdout.readline()
        assert line.strip() == "trickling", line + (attacker.stdout.read() or "")

        probe = subprocess.run([*inside_server, "-c", OPERATOR, f"http://127.0.0.1:{port}"],
                               capture_output=True, text=True, timeout=90)
        result = json.loads(probe.stdout.strip().splitlines()[-1])
        assert "error" not in result, result
        assert result["status"] == 200
        assert result["vend"] == 200 and result["vend_state"] == "success", result
        assert attacker.poll() is None, "the attack should still be running"
        assert server.poll() is None, "the server died"
    finally:
        if attacker is not None:
            attacker.kill()
            attacker.wait(10)
        output = _stop(server)
    assert "Traceback" not in output, output


def test_a_server_stops_on_sigterm_while_slow_clients_hold_connections(tmp_path):
    port = _free_port()
    server = _start_app(["--host", "127.0.0.1", "--port", str(port)], tmp_path)
    held: list[socket.socket] = []
    try:
        wait_until(lambda: _answers(f"http://127.0.0.1:{port}/health"), timeout=30,
                   interval=0.1, message="the server to start")
        for _ in range(20):
            conn = socket.create_connection(("127.0.0.1", port), timeout=5)
            conn.sendall(b"GET /status HTTP/1.1\r\nHost")
            held.append(conn)
        server.terminate()
        assert server.wait(20) == 0
    finally:
        for conn in held:
            conn.close()
        _stop(server)
