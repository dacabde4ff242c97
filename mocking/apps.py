from django.apps import AppConfig


class MockingConfig(AppConfig):
    name = "mocking"
