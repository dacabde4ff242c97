"""The fault suite's fixtures live in tests/faults/fixtures.py (shared with tests/security)."""

from tests.faults.fixtures import fault_template_db, make_stack  # noqa: F401
