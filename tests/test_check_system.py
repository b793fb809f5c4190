"""check_system.py run as a subprocess against healthy and broken setups."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import site_without

from vending import doctor
from vending.devices.usb_bridges import bridge_name
from vending.doctor import checks as doctor_checks
from vending.doctor import e2e as doctor_e2e
from vending.doctor.requirements import parse_requirements, version_satisfies

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "check_system.py"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_check(*args: str, python_args: tuple[str, ...] = (), env: dict[str, str] | None = None,
              json_output: bool = True) -> tuple[int, Any]:
    """Run check_system.py; (exit code, parsed JSON or the text printed)."""
    full_env = dict(os.environ, PYTHONIOENCODING="utf-8")
    full_env.update(env or {})
    command = [sys.executable, *python_args, str(SCRIPT), *(("--json",) if json_output else ()), *args]
    done = subprocess.run(command, cwd=ROOT, env=full_env, capture_output=True, text=True,
                          encoding="utf-8", timeout=60)
    if json_output and done.stdout.strip().startswith("{"):
        return done.returncode, json.loads(done.stdout)
    return done.returncode, done.stdout + done.stderr


def checks(report: dict[str, Any], status: str | None = None) -> list[dict[str, Any]]:
    found = [c for test in report["tests"] for c in test["checks"]]
    return [c for c in found if status is None or c["status"] == status]


def failed_names(report: dict[str, Any]) -> set[str]:
    return {c["name"] for c in checks(report, "fail")}


@pytest.fixture
def down_url() -> str:
    """A loopback URL where nothing listens."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def healthy_args(live_server, tmp_path: Path) -> list[str]:
    """Options that describe a working setup: the live server holds the HTTP port."""
    return ["--url", live_server.url, "--http-port", str(live_server.port),
            "--discovery-port", str(free_port(socket.SOCK_DGRAM)),
            "--data-dir", str(tmp_path / "check-data")]


def test_a_healthy_setup_passes_every_check_and_exits_zero(healthy_args: list[str]) -> None:
    code, report = run_check(*healthy_args)
    assert failed_names(report) == set(), checks(report, "fail")
    assert code == 0
    assert report["exit_code"] == 0
    assert [t["name"] for t in report["tests"]] == [name for name, _ in doctor.TESTS]
    names = {c["name"] for c in checks(report, "ok")}
    assert {"GET /status", "Vend on the simulated board", "Data directory", "Python version"} <= names
    port_check = next(c for c in checks(report) if c["name"].startswith("TCP port"))
    assert "held by this vending server" in port_check["detail"]


def test_the_human_report_marks_each_check_and_ends_with_a_summary(healthy_args: list[str]) -> None:
    code, text = run_check(*healthy_args, json_output=False)
    assert code == 0
    assert "\u2705 Python version" in text
    assert "System check passed" in text
    assert "\u274c" not in text


def test_quiet_prints_only_problems_and_the_summary(healthy_args: list[str]) -> None:
    code, text = run_check(*healthy_args, "--quiet", json_output=False)
    assert code == 0
    assert "\u2705" not in text
    assert "System check passed" in text


def test_a_server_not_started_yet_is_a_warning_with_how_to_start_it(healthy_args: list[str],
                                                                   down_url: str) -> None:
    # Before the first start: the seed checks the server "if running", so a healthy setup passes.
    args = list(healthy_args)
    args[args.index("--url") + 1] = down_url
    args[args.index("--http-port") + 1] = str(free_port())
    code, text = run_check(*args, json_output=False)
    assert code == 0, text
    assert "GET /status: no server answers at " + down_url in text
    assert "fine if it is not started yet" in text
    assert "start it: python src/app.py" in text
    assert "System check passed" in text


def test_check_system_runs_and_names_the_missing_packages_with_no_package_installed(
        tmp_path: Path, down_url: str) -> None:
    # A bare interpreter (-S: no site-packages at all), as before `pip install -r requirements.txt`.
    code, report = run_check("--url", down_url, "--http-port", str(free_port()),
                             "--data-dir", str(tmp_path / "data"), python_args=("-S",),
                             env={"PYTHONPATH": ""})
    assert code == 1
    missing = {c["name"] for c in checks(report, "fail") if c["detail"].startswith("cannot import")}
    assert {"Flask", "waitress", "pyserial", "requests"} <= missing
    server = next(c for c in checks(report) if c["name"] == "GET /status")
    assert server["status"] == "warn"
    assert all("Traceback" not in c["recommendation"] for c in checks(report))


def test_a_missing_dependency_fails_with_the_pip_command(tmp_path: Path, down_url: str) -> None:
    partial = site_without("waitress", tmp_path)
    code, report = run_check("--url", down_url, "--http-port", str(free_port()),
                             "--data-dir", str(tmp_path / "data"),
                             python_args=("-S",), env={"PYTHONPATH": str(partial)})
    assert code == 1
    waitress = next(c for c in checks(report) if c["name"] == "waitress")
    assert waitress["status"] == "fail"
    assert "cannot import waitress" in waitress["detail"]
    assert "pip install -r requirements.txt" in waitress["recommendation"]
    flask = next(c for c in checks(report) if c["name"] == "Flask")
    assert flask["status"] == "ok"


@pytest.fixture
def held_ports() -> Iterator[tuple[int, int]]:
    """A TCP port listening and a UDP port bound on loopback, by this test, not the server."""
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen(1)
        udp.bind(("127.0.0.1", 0))
        yield tcp.getsockname()[1], udp.getsockname()[1]
    finally:
        tcp.close()
        udp.close()


def test_ports_held_by_another_program_fail_with_how_to_free_them(
        held_ports: tuple[int, int], tmp_path: Path, down_url: str) -> None:
    tcp, udp = held_ports
    code, report = run_check("--url", down_url, "--http-port", str(tcp), "--discovery-port", str(udp),
                             "--data-dir", str(tmp_path / "data"))
    assert code == 1
    by_name = {c["name"]: c for c in checks(report)}
    assert by_name[f"TCP port {tcp}"]["status"] == "fail"
    assert "another program" in by_name[f"TCP port {tcp}"]["detail"]
    assert f"--port {tcp + 1}" in by_name[f"TCP port {tcp}"]["recommendation"]
    assert by_name[f"UDP port {udp}"]["status"] == "fail"
    assert f"sport = :{udp}" in by_name[f"UDP port {udp}"]["recommendation"]


def test_a_data_directory_that_cannot_be_created_fails(tmp_path: Path, healthy_args: list[str]) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the data directory's parent should be")
    args = list(healthy_args)
    args[args.index("--data-dir") + 1] = str(blocker / "data")
    code, report = run_check(*args)
    assert code == 1
    data = next(c for c in checks(report) if c["name"] == "Data directory")
    assert data["status"] == "fail"
    assert "--data-dir" in data["recommendation"]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root may write to a read-only directory, so the check cannot fail")
def test_a_read_only_data_directory_fails_with_the_chown_command(tmp_path: Path,
                                                                 healthy_args: list[str]) -> None:
    data_dir = tmp_path / "read-only"
    data_dir.mkdir()
    data_dir.chmod(0o555)
    args = list(healthy_args)
    args[args.index("--data-dir") + 1] = str(data_dir)
    try:
        code, report = run_check(*args)
    finally:
        data_dir.chmod(0o755)
    assert code == 1
    data = next(c for c in checks(report) if c["name"] == "Data directory")
    assert data["status"] == "fail" and "not writable" in data["detail"]
    assert "chown" in data["recommendation"]


def test_a_port_given_explicitly_is_opened_and_a_missing_one_fails(healthy_args: list[str]) -> None:
    controller, board = os.openpty()
    try:
        name = os.ttyname(board)
        code, report = run_check(*healthy_args, "--port", name, "--port", "/dev/does-not-exist")
    finally:
        os.close(controller)
        os.close(board)
    by_name = {c["name"]: c for c in checks(report)}
    assert by_name[f"{name} open"]["status"] == "ok"
    assert by_name["/dev/does-not-exist open"]["status"] == "fail"
    assert "/dev/ttyUSB0" in by_name["/dev/does-not-exist open"]["recommendation"]
    assert code == 1


E2E_TRANSPORTS = ["serial", "wifi"] if hasattr(os, "openpty") else ["wifi"]


def test_e2e_vends_through_a_serial_and_a_wifi_board_and_exits_zero() -> None:
    # run_check's subprocess timeout bounds the run; it takes about a second.
    code, report = run_check("--e2e")
    assert checks(report, "fail") == [] and checks(report, "warn") == [], checks(report)
    assert code == 0 and report["exit_code"] == 0
    vends = report["e2e"]["vends"]
    assert [v["transport"] for v in vends] == E2E_TRANSPORTS
    for vend in vends:
        assert vend["status"] == "success" and vend["ok"] is True, vend
        assert vend["communication"] == vend["transport"]
        assert vend["motor_runs"] == 1
    names = [c["name"] for c in checks(report)]
    assert "WiFi board found the server by discovery" in names
    assert names[-1] == "Clean-up"
    data_dir = checks(report)[0]["detail"]
    assert names[0] == "Temporary data directory" and not Path(data_dir).exists()


def test_e2e_prints_each_step_with_a_mark_and_a_passing_summary() -> None:
    code, text = run_check("--e2e", json_output=False)
    assert code == 0, text
    assert "\u2705 Server started: http://127.0.0.1:" in text
    for transport in E2E_TRANSPORTS:
        assert f"\u2705 Vend over {transport}: slot " in text
    assert "End-to-end self-test passed" in text
    assert "\u274c" not in text


def test_e2e_marks_are_plain_ascii_when_the_terminal_cannot_show_emoji() -> None:
    code, text = run_check("--e2e", json_output=False, env={"PYTHONIOENCODING": "ascii"})
    assert code == 0, text
    assert "[OK]   Vend over wifi" in text


def test_e2e_without_pseudo_terminals_skips_the_serial_board_saying_why_and_vends_over_wifi() -> None:
    # As on Windows: no os.openpty.
    program = ("import os, runpy; del os.openpty;"
               f" runpy.run_path({str(SCRIPT)!r}, run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", program, "--e2e", "--json"], cwd=ROOT,
                          capture_output=True, text=True, encoding="utf-8", timeout=60,
                          env=dict(os.environ, PYTHONIOENCODING="utf-8"))
    report = json.loads(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr
    assert report["e2e"]["serial"] == "skipped"
    assert "pseudo-terminals" in report["e2e"]["serial_skip_reason"]
    skipped = checks(report, "skip")
    assert [c["name"] for c in skipped] == ["Serial board on a pty"]
    assert [(v["transport"], v["status"]) for v in report["e2e"]["vends"]] == [("wifi", "success")]
    assert report["summary"]["skip"] == 1


def test_e2e_fails_with_exit_code_one_when_the_wifi_board_finds_no_server(monkeypatch, capsys) -> None:
    from vending.sim.wifi import WifiBoard

    # Only the discovery step is shortened: the serial board keeps its time under load.
    monkeypatch.setattr(doctor_e2e, "E2E_DISCOVERY_TIMEOUT", 1.0)
    monkeypatch.setattr(WifiBoard, "discover", lambda self, timeout=0.5, attempts=1: None)
    code = doctor.main(["--e2e", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and report["exit_code"] == 1
    assert failed_names(report) == {"WiFi board found the server by discovery"}
    failure = checks(report, "fail")[0]
    assert "got no answer" in failure["detail"] and "firewall" in failure["recommendation"]
    assert [v["transport"] for v in report["e2e"]["vends"]] == E2E_TRANSPORTS[:-1]
    assert checks(report)[-1]["name"] == "Clean-up" and checks(report)[-1]["status"] == "ok"


@pytest.mark.parametrize(("vid", "pid", "name"), [
    (0x10C4, 0xEA60, "Silicon Labs CP210x"), (0x1A86, 0x7523, "WCH CH340"),
    (0x1A86, 0x55D4, "WCH CH9102"), (0x0403, 0x6001, "FTDI FT232R"), (0x0403, 0x6010, "FTDI FT2232"),
    (0x0403, 0x6015, "FTDI FT231X"), (0x303A, 0x1001, "Espressif native USB"),
    (0x303A, 0x0002, "Espressif native USB"), (0x0403, 0x6014, None), (0x2341, 0x0043, None),
    (None, None, None),
])
def test_esp32_bridges_are_recognised_by_vid_and_pid(vid: int | None, pid: int | None,
                                                     name: str | None) -> None:
    assert bridge_name(vid, pid) == name


@pytest.mark.parametrize(("version", "specs", "ok"), [
    ("3.1.3", [(">=", "2.3"), ("<", "4")], True),
    ("4.0", [(">=", "2.3"), ("<", "4")], False),
    ("2.2.9", [(">=", "2.3")], False),
    ("3.5", [(">=", "3.5"), ("<", "4")], True),
    ("0.21.1", [("~=", "0.21")], True),
    ("1.0", [("~=", "0.21")], False),
    ("2.0.0", [("==", "2")], True),
])
def test_requirement_versions_are_compared_by_release_number(version: str, specs: list[tuple[str, str]],
                                                             ok: bool) -> None:
    assert version_satisfies(version, specs) is ok


def test_requirements_txt_is_parsed_without_the_editable_line() -> None:
    names = [name for name, _ in parse_requirements(ROOT / "requirements.txt")]
    assert "Flask" in names and "pyserial" in names
    assert all(not name.startswith("-") for name in names)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux /proc")
def test_the_process_holding_a_serial_port_is_named_without_opening_the_port() -> None:
    controller, board = os.openpty()
    name = os.ttyname(board)
    holder = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                              stdin=subprocess.PIPE, stdout=board, text=True)
    try:
        holders = doctor_checks._port_holders(name)
    finally:
        holder.stdin.close()
        holder.wait(10)
        os.close(controller)
        os.close(board)
    assert any(h.startswith(f"pid {holder.pid}: ") and "sys.stdin.read()" in h for h in holders)
