"""Process logging: plain and logfmt lines on one stream."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator

import pytest

from gateway.logs import LogfmtFormatter, logfmt_value, setup_logging


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("ready", "ready"),
        ("gateway ready", '"gateway ready"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("a=b", '"a=b"'),
        ("two\nlines", '"two\\nlines"'),
        ("", '""'),
        (5060, "5060"),
    ],
)
def test_logfmt_values(value: object, written: str) -> None:
    assert logfmt_value(value) == written


def test_logfmt_record_is_one_line_even_with_a_traceback() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.LogRecord(
            "gateway.app", logging.ERROR, __file__, 1, "failed: %s", ("x y",), exc_info=True
        )
        record.exc_info = sys.exc_info()
    line = LogfmtFormatter().format(record)
    assert "\n" not in line
    assert ' level=error logger=gateway.app msg="failed: x y" exc="Traceback' in line
    assert line.startswith("time=") and "RuntimeError: boom" in line


def test_setup_logging_filters_by_level_and_replaces_its_handler(
    restore_root_logger: None,
) -> None:
    first, second = io.StringIO(), io.StringIO()
    setup_logging("WARNING", "plain", first)
    setup_logging("INFO", "logfmt", second)
    log = logging.getLogger("gateway.test")
    log.debug("hidden")
    log.info("shown %d", 1)
    assert first.getvalue() == ""
    assert second.getvalue().count("\n") == 1
    assert 'level=info logger=gateway.test msg="shown 1"' in second.getvalue()


def test_plain_format(restore_root_logger: None) -> None:
    stream = io.StringIO()
    setup_logging("DEBUG", "plain", stream)
    logging.getLogger("gateway.test").debug("hello")
    assert stream.getvalue().rstrip().endswith(" DEBUG gateway.test: hello")


def test_unknown_level_is_refused(restore_root_logger: None) -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        setup_logging("LOUD")
