"""--log-json: each log event is one JSON object on stderr (swarm/logging_setup.py)."""

from __future__ import annotations

import json
import logging

from swarm.logging_setup import setup_logging


def test_json_lines_carry_time_level_logger_message_and_the_exception(capsys):
    log = setup_logging("INFO", name="molink.test", json_lines=True)
    try:
        log.info("peer ready: %s", "x")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("step failed")
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
        assert [(e["level"], e["logger"], e["message"]) for e in lines] == [
            ("INFO", "molink.test", "peer ready: x"), ("ERROR", "molink.test", "step failed")]
        assert "time" in lines[0] and "ValueError: boom" in lines[1]["exc_info"]
    finally:  # leave no handler bound to this test's captured stderr
        root = logging.getLogger()
        for handler in [h for h in root.handlers if h.get_name() == "molink-stderr"]:
            root.removeHandler(handler)
        root.setLevel(logging.WARNING)
