"""Where the project is: the processes the tests start run from its root."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[2]


def venv_tool(name: str) -> str:
    """A tool installed by a PyPI package of the `test` extra, next to this interpreter."""
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    assert found, f"{name} is missing: pip install -e '.[test]'"
    return found
