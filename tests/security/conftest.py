"""The full-run log test uses the fault suite's stack fixtures; the hostile-input tests the running app
(tests/security/running_app.py)."""

from tests.faults.fixtures import fault_template_db, make_stack  # noqa: F401
from tests.security.running_app import running_app, running_app_template, start_running_app  # noqa: F401
