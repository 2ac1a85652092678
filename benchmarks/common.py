"""What every benchmark shares: the machine's facts and writing a result (stdout + benchmarks/results/)."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, object]:
    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "processor": platform.processor()}


def publish(name: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Stamp the result with name, UTC date and machine; print it; write results/<name>-<date>.json."""
    result = {"benchmark": name, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "machine": machine(), **fields}
    text = json.dumps(result, indent=1)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}-{result['date'][:10]}.json").write_text(text + "\n")
    return result


DEFAULT_MODELS_DIR = os.path.join(tempfile.gettempdir(), "molink_bench_models")


def models_root(models_dir: str) -> Path:
    """The folder generated benchmark checkpoints live in (created); quiets the swarm's logs to warnings."""
    from swarm.logging_setup import setup_logging

    setup_logging("WARNING")
    root = Path(models_dir)
    root.mkdir(parents=True, exist_ok=True)
    return root
