"""setup.bat and start.bat cannot run here; these check what can be checked without Windows."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_batch_files_are_checked_out_with_crlf_line_endings() -> None:
    assert "*.bat text eol=crlf" in (ROOT / ".gitattributes").read_text()
    for name in ("setup.bat", "start.bat"):
        raw = (ROOT / name).read_bytes()
        assert raw.count(b"\n") == raw.count(b"\r\n"), name


def test_setup_creates_the_venv_installs_requirements_and_explains_a_missing_python() -> None:
    text = (ROOT / "setup.bat").read_text()
    assert "-m venv venv" in text
    assert '"venv\\Scripts\\python.exe" -m pip install -r requirements.txt' in text
    assert "https://www.python.org/downloads/" in text
    assert "sys.version_info >= (3, 9)" in text


def test_start_runs_the_server_from_the_venv_and_opens_the_browser() -> None:
    text = (ROOT / "start.bat").read_text()
    assert '"venv\\Scripts\\python.exe" src\\app.py %*' in text
    assert "webbrowser.open('http://localhost:%PORT%/')" in text
    assert "run setup.bat first" in text


def test_every_goto_in_the_batch_files_has_its_label() -> None:
    for name in ("setup.bat", "start.bat"):
        lines = (ROOT / name).read_text().splitlines()
        labels = {line[1:].strip().lower() for line in lines if line.startswith(":")}
        targets = {line.split("goto", 1)[1].strip().lower() for line in lines
                   if "goto " in line and not line.lstrip().lower().startswith("rem")}
        assert targets <= labels, name
