"""The documented production environment (README "Production"), shared by the deploy tests."""

PRODUCTION = {
    "DEBUG": "0",
    "ALLOWED_HOSTS": "ticker.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://ticker.example.com",
    "SECURE_SSL_REDIRECT": "1",
    "SESSION_COOKIE_SECURE": "1",
    "CSRF_COOKIE_SECURE": "1",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
    "SECURE_HSTS_PRELOAD": "1",
    "USE_X_FORWARDED_PROTO": "1",
    "METRICS_TOKEN": "metrics-token-for-tests-only",
}
