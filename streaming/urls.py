"""Pages served by the streaming app (the option chain page comes with the [chain] issue)."""

urlpatterns: list = []
