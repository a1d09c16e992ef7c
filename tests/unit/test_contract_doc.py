"""docs/contract.md keeps up with the code: every setting is in its configuration table and
every error code the service can answer is in its error table."""

from __future__ import annotations

import re

from service.errors import _CODES
from service.settings import FIELDS
from tests.support.paths import ROOT

DOC = (ROOT / "docs" / "contract.md").read_text()


def _error_codes() -> set[str]:
    """The codes of every `ApiError(...)` and `AuthError(...)` in the service's source."""
    codes: set[str] = set(_CODES.values()) - {"bad_request", "unauthorized", "forbidden"}
    for path in (ROOT / "service").rglob("*.py"):
        text = path.read_text()
        codes.update(re.findall(r'ApiError\(\s*\d{3},\s*"([a-z_]+)"', text))
        codes.update(re.findall(r'AuthError\(\s*"([a-z_]+)"', text))
    return codes


def test_every_setting_is_in_the_configuration_table() -> None:
    missing = [spec.env for spec in FIELDS if f"| `{spec.env}` |" not in DOC]
    assert missing == []


def test_every_error_code_is_in_the_error_table() -> None:
    table = DOC[DOC.index("## Errors") : DOC.index("## Tokens")]
    codes = _error_codes()
    assert len(codes) > 15  # the scan found them
    assert sorted(c for c in codes if f"`{c}`" not in table) == []
