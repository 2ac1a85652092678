"""Fixtures shared by every tier."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def zoo_results() -> Iterator[dict]:
    """row -> {what: result}, filled by the zoo matrices; written as JSON to $MOLINK_ZOO_RESULTS (merged into
    what is there) when that is set: ``python -m tests.zoo_table --run`` renders docs/models.md from it."""
    results: dict = defaultdict(dict)
    yield results
    target = os.environ.get("MOLINK_ZOO_RESULTS")
    if target and results:
        path = Path(target)
        merged = json.loads(path.read_text()) if path.exists() else {}
        for row, found in results.items():
            merged.setdefault(row, {}).update(found)
        path.write_text(json.dumps(merged, indent=1, sort_keys=True) + "\n")
