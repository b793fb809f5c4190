"""Logs: one event per line with level and component, --log-level, no secrets."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from vending.config import config_from_args
from vending.logs import configure_logging, redact


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    configure_logging("DEBUG", stream)
    yield stream
    for handler in list(root.handlers):
        if getattr(handler, "_vending", False):
            root.removeHandler(handler)
    root.setLevel(level)


def test_an_event_with_a_traceback_stays_on_one_line_with_level_and_component(captured) -> None:
    try:
        raise RuntimeError("motor\njammed")
    except RuntimeError:
        logging.getLogger("vending.vend").exception("vend %s crashed", "abc")
    lines = captured.getvalue().splitlines()
    assert len(lines) == 1
    assert " ERROR vending.vend: vend abc crashed\\nTraceback" in lines[0]


@pytest.mark.parametrize("text", [
    "joined with token=s3cr3t-value from 10.0.0.5",
    'body {"password": "hunter2", "slot": 1}',
    "Authorization: Bearer abc.def.ghi",
    "psk=hunter2&ssid=shop",
    "api_key: abcdef",
])
def test_secrets_are_masked_in_every_log_line(captured, text: str) -> None:
    logging.getLogger("vending.wifi").warning("%s", text)
    line = captured.getvalue()
    for secret in ("s3cr3t-value", "hunter2", "abc.def.ghi", "abcdef"):
        assert secret not in line
    assert "***" in line


def test_ordinary_words_are_not_masked() -> None:
    assert redact("vend 1a2b queued: slot 3 on SIMULATOR (simulation)") == \
        "vend 1a2b queued: slot 3 on SIMULATOR (simulation)"


def test_log_level_comes_from_the_command_line_and_the_environment() -> None:
    assert config_from_args(["--log-level", "debug"], environ={}).log_level == "DEBUG"
    assert config_from_args([], environ={"VENDING_LOG_LEVEL": "warning"}).log_level == "WARNING"
    with pytest.raises(ValueError, match="log_level"):
        config_from_args([], environ={"VENDING_LOG_LEVEL": "loud"})


def test_the_chosen_level_filters_lower_events(captured) -> None:
    configure_logging("WARNING", captured)
    logging.getLogger("vending").info("not shown")
    logging.getLogger("vending").warning("shown")
    assert captured.getvalue().count("\n") == 1
    assert "WARNING vending: shown" in captured.getvalue()


def test_refusals_past_their_share_are_summed_up_in_one_line_after_their_minute(caplog):
    import logging

    from vending.logs import RefusalLog

    now = [600.0]
    refusals = RefusalLog(logging.getLogger("vending.test"), per_minute=2, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="vending.test"):
        logged = [refusals.refused(source, "refused %s", source)
                  for source in ["a", "a", "b", "c", "c", "c"]]
        assert logged == [True, False, True, False, False, False]  # a and b took the minute's 2
        now[0] += 60
        assert refusals.refused("a", "refused %s", "a")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["refused a", "refused b",
                     "4 more refused requests in the minute from 00:10 UTC, not logged one by"
                     " one: c x3, a x1", "refused a"]
