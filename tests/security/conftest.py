"""The full-run log test uses the fault suite's stack fixtures."""

from tests.faults.fixtures import fault_template_db, make_stack  # noqa: F401
