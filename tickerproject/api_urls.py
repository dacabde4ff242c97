"""The REST API under /api/ (filled in by the [chain] issue)."""

urlpatterns: list = []
