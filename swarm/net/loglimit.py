"""Log lines that a stranger can trigger, at a bounded rate.

A peer logs what goes wrong on its connections, and anyone can open connections: 1,000 bad ones a second must
not write 1,000 lines a second. ``LogLimiter.allow(key)`` says whether a line of that kind may be written now
(at most ``burst`` per ``period_s`` per key) and how many of that kind were held back since the last one
written, so the line can say so; ``log`` does both. The clock is injected.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class LogLimiter:
    burst: int = 5
    period_s: float = 60.0
    clock: Callable[[], float] = time.monotonic
    max_keys: int = 1024  # kinds remembered; beyond them the oldest window is forgotten
    _windows: dict[str, tuple[float, int, int]] = field(default_factory=dict)  # key -> (start, written, held)

    def allow(self, key: str) -> tuple[bool, int]:
        """(write this line?, lines of this kind held back before it)."""
        now = self.clock()
        start, written, held = self._windows.get(key, (now, 0, 0))
        if now - start >= self.period_s:
            start, written = now, 0
        if written < self.burst:
            self._remember(key, (start, written + 1, 0))
            return True, held
        self._remember(key, (start, written, held + 1))
        return False, held + 1

    def log(self, logger: logging.Logger, level: int, key: str, msg: str, *args: object,
            exc_info: bool = False) -> None:
        """``logger.log(level, msg, *args)`` when ``allow(key)`` says so, telling how many were held back."""
        allowed, held = self.allow(key)
        if allowed:
            suffix = f" ({held} more like it not logged)" if held else ""
            logger.log(level, msg + suffix, *args, exc_info=exc_info)

    def _remember(self, key: str, window: tuple[float, int, int]) -> None:
        self._windows.pop(key, None)
        if len(self._windows) >= self.max_keys:
            self._windows.pop(next(iter(self._windows)))
        self._windows[key] = window
