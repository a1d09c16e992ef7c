"""The development secret: what `roomlogs serve` signs with when no key is configured.

Kept in a file of the user's state directory (mode 0600), so a restart keeps tokens valid
and `roomlogs token` signs tokens that the development server accepts. `ROOMLOGS_STATE_DIR`
moves it (tests, several checkouts); a read-only home makes it ephemeral again.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

log = logging.getLogger("service")


def dev_secret_path() -> Path:
    base = os.environ.get("ROOMLOGS_STATE_DIR")
    if base:
        return Path(base) / "dev-secret"
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "roomlogs" / "dev-secret"


def read_dev_secret() -> str | None:
    """The kept secret, if `serve` has made one."""
    try:
        text = dev_secret_path().read_text().strip()
    except OSError:
        return None
    return text or None


def load_dev_secret() -> str:
    """The kept secret, made now if there is none (by whichever process comes first)."""
    path = dev_secret_path()
    kept = read_dev_secret()
    if kept is not None:
        return kept
    secret = secrets.token_urlsafe(32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_dev_secret() or secret
    except OSError as exc:
        log.warning("the development secret is ephemeral: cannot write %s (%s)", path, exc)
        return secret
    with os.fdopen(fd, "w") as out:
        out.write(secret + "\n")
    return secret
