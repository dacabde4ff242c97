"""Kite login flow views (filled in by the [foundation] admin work)."""

urlpatterns: list = []
