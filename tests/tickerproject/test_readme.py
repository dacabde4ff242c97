"""The README documents every environment variable that settings.py reads."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_environment_variable_is_in_the_readme():
    settings_source = (REPO / "tickerproject" / "settings.py").read_text()
    variables = set(re.findall(r"env\.\w+\(\s*\"([A-Z][A-Z0-9_]*)\"", settings_source))
    assert {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG"} <= variables
    readme = (REPO / "README.md").read_text()
    missing = sorted(v for v in variables if f"`{v}`" not in readme)
    assert not missing, f"README.md does not document: {', '.join(missing)}"
