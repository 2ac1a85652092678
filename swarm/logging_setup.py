"""One logging setup for every molink process: one line per event on stderr, hivemind kept quiet.

``json_lines=True`` (the CLIs' ``--log-json``) writes each event as one JSON object instead (time, level,
logger, message, and the exception when there is one), through python-json-logger, for log collectors.

hivemind installs its own colored handler on the ``hivemind`` logger and stops propagation; we switch
that off (``use_hivemind_log_handler("nowhere")``) so its lines go through our handler in our format,
and raise its level to WARNING unless the user asked for DEBUG, because its INFO lines describe
libp2p internals a user of molink cannot act on.
"""

from __future__ import annotations

import logging
import sys

from hivemind.utils.logging import use_hivemind_log_handler

from swarm.errors import ConfigError

FORMAT = "%(asctime)s.%(msecs)03d %(levelname)-7s %(name)s: %(message)s"
DATEFMT = "%H:%M:%S"
_QUIET_LOGGERS = ("hivemind", "asyncio")
_HANDLER_NAME = "molink-stderr"


def setup_logging(level: str = "INFO", name: str = "molink", json_lines: bool = False) -> logging.Logger:
    """Route all logs to stderr at ``level`` (as JSON objects with ``json_lines``) and return the logger called
    ``name``; safe to call twice."""
    numeric = logging.getLevelName(str(level).upper())
    if not isinstance(numeric, int):
        raise ConfigError(f"unknown log level {level!r} (use DEBUG, INFO, WARNING or ERROR)")
    use_hivemind_log_handler("nowhere")  # hivemind's records propagate to the root logger, formatted by us
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(json_formatter() if json_lines else logging.Formatter(FORMAT, datefmt=DATEFMT))
    root.addHandler(handler)
    root.setLevel(numeric)
    for quiet in _QUIET_LOGGERS:
        logging.getLogger(quiet).setLevel(
            numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING)
        )
    return logging.getLogger(name)


def json_formatter() -> logging.Formatter:
    from pythonjsonlogger.json import JsonFormatter

    return JsonFormatter("{asctime}{levelname}{name}{message}", style="{",
                         rename_fields={"asctime": "time", "levelname": "level", "name": "logger"})
