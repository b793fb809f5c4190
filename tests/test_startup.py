"""What `python src/app.py` says before it serves: where phones open the page, and bad settings
or a stale virtual environment in one line with the fix (no traceback)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import site_without, test_config

from vending import startup

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "src" / "app.py"


def run_app(*args: str, python_args: tuple[str, ...] = (), env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, *python_args, str(APP), "--no-mdns", "--port", "0", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, cwd=ROOT,
                          env=dict(os.environ, **(env or {})))


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The single error line the app printed; fails on a traceback or a zero exit."""
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, done.stderr
    return errors[0]


class TestTheBanner:
    def test_bound_to_loopback_it_offers_no_link_for_other_computers(self, tmp_path: Path) -> None:
        text = startup.banner(test_config(tmp_path, host="127.0.0.1", port=5000), ["simulation"],
                              "/login?token=abc")
        assert "http://localhost:5000" in text
        assert "token=abc" not in text
        assert "--host 0.0.0.0" in text

    def test_on_every_interface_phones_get_the_lan_address_not_localhost(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(startup, "lan_address", lambda: "192.168.1.23")
        text = startup.banner(test_config(tmp_path, host="0.0.0.0", port=5000), [], "/login?token=abc")
        assert "   http://192.168.1.23:5000/login?token=abc" in text
        assert "localhost:5000/login" not in text

    def test_the_lan_address_of_this_machine_is_never_loopback(self) -> None:
        address = startup.lan_address()
        assert address is None or not address.startswith("127.")


def _netns_unavailable() -> str | None:
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or shutil.which("ip") is None:
        return "needs Linux, root and iproute2 to create a network namespace"
    return None


@pytest.fixture
def lan_namespace() -> Iterator[str]:
    """A namespace whose only network is a veth with 10.233.18.2/24, like a Pi on shop WiFi."""
    reason = _netns_unavailable()
    if reason:
        pytest.skip(reason)
    tag = os.getpid() % 100000
    ns, inside, outside = f"hsns{tag}", f"hsi{tag}", f"hso{tag}"
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=10)
    try:
        for step in (["link", "add", outside, "type", "veth", "peer", "name", inside],
                     ["link", "set", inside, "netns", ns],
                     ["-n", ns, "addr", "add", "10.233.18.2/24", "dev", inside],
                     ["-n", ns, "link", "set", inside, "up"],
                     ["-n", ns, "link", "set", "lo", "up"]):
            subprocess.run(["ip", *step], check=True, timeout=10, capture_output=True)
        yield ns
    finally:
        subprocess.run(["ip", "link", "del", outside], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


@pytest.mark.parametrize("default_route", [False, True], ids=["no-internet", "with-a-router"])
def test_the_banner_finds_the_lan_address_in_a_network_of_its_own(lan_namespace: str,
                                                                  default_route: bool) -> None:
    if default_route:
        subprocess.run(["ip", "-n", lan_namespace, "route", "add", "default", "via", "10.233.18.1"],
                       check=True, timeout=10)
    program = textwrap.dedent("""
        from pathlib import Path
        from vending import Config
        from vending.startup import banner
        print(banner(Config(host="0.0.0.0", port=5000, data_dir=Path("/tmp")), [], "/login?t=x"))
    """)
    done = subprocess.run(["ip", "netns", "exec", lan_namespace, sys.executable, "-c", program],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "   http://10.233.18.2:5000/login?t=x" in done.stdout


class TestBadSettingsSayOneLine:
    def test_a_data_dir_that_is_a_file(self, tmp_path: Path) -> None:
        (tmp_path / "file").write_text("x")
        line = one_line_error(run_app("--host", "127.0.0.1", "--data-dir", str(tmp_path / "file")))
        assert "is a file, not a directory" in line and "--data-dir" in line

    def test_a_data_dir_that_cannot_be_created(self, tmp_path: Path) -> None:
        (tmp_path / "file").write_text("x")
        line = one_line_error(run_app("--host", "127.0.0.1", "--data-dir",
                                      str(tmp_path / "file" / "below")))
        assert "cannot be written" in line and "--data-dir" in line

    def test_a_host_that_is_not_an_address(self, tmp_path: Path) -> None:
        line = one_line_error(run_app("--host", "999.1.1.1", "--data-dir", str(tmp_path)))
        assert "is not an IP address" in line and "--host 0.0.0.0" in line

    def test_a_host_that_is_not_this_machine(self, tmp_path: Path) -> None:
        # TEST-NET-3: never assigned to a machine.
        line = one_line_error(run_app("--host", "203.0.113.77", "--data-dir", str(tmp_path)))
        assert "not an address of this machine" in line and "--host 127.0.0.1" in line

    def test_an_old_virtual_environment_missing_a_package(self, tmp_path: Path) -> None:
        partial = site_without("waitress", tmp_path)
        done = run_app("--host", "127.0.0.1", "--data-dir", str(tmp_path / "data"),
                       python_args=("-S",),
                       env={"PYTHONPATH": os.pathsep.join([str(partial), str(ROOT / "src")])})
        line = one_line_error(done)
        assert "lacks waitress" in line and "pip install -r requirements.txt" in line
