"""Print the pip arguments that pin aiohttp and redis-py to the lowest, or the newest,
versions `setup.cfg` allows (read from `install_requires`, so the two never drift apart)."""

from __future__ import annotations

import configparser
import re
import sys
from pathlib import Path

PACKAGES = ("aiohttp", "redis")


def main(which: str) -> int:
    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).resolve().parent.parent / "setup.cfg")
    requires = [r.strip() for r in cfg["options"]["install_requires"].splitlines() if r.strip()]
    args: list[str] = ["--upgrade"] if which == "newest" else []
    for name in PACKAGES:
        spec = next(r for r in requires if re.match(rf"{name}(\[|>|=|<|!|$)", r))
        if which == "lowest":
            extras = re.match(rf"{name}(\[[^\]]*\])?", spec)
            lowest = re.search(r">=\s*([0-9][^,\s]*)", spec)
            assert extras is not None, spec
            assert lowest is not None, spec
            args.append(f"{name}{extras.group(1) or ''}=={lowest.group(1)}")
        else:
            args.append(spec)
    print("\n".join(args))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in ("lowest", "newest"):
        sys.exit("usage: _bounds.py lowest|newest")
    sys.exit(main(sys.argv[1]))
