from django.conf import settings


def test_settings_load_with_embedded_defaults_or_env():
    assert settings.ASGI_APPLICATION == "tickerproject.asgi.application"
