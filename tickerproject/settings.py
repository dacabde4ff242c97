"""One settings module, driven by the environment.

Nothing set means *embedded*: a SQLite file, local-memory cache, in-memory channel layer and
eager Celery, so a fresh checkout runs with `make run`. `DATABASE_URL` and `REDIS_URL` switch to
the real services; every variable is listed in README.md.
"""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from environs import Env

from tickerproject.client_address import parse_trusted_proxies

BASE_DIR = Path(__file__).resolve().parent.parent

env = Env()
env.read_env(BASE_DIR / ".env", recurse=False)

DEBUG = env.bool("DEBUG", default=False)

if DEBUG:
    # A development-only key so `make run` works from a fresh clone; never used with DEBUG off.
    SECRET_KEY = env.str("SECRET_KEY", default="django-insecure-dev-only-key-do-not-use-in-production")
else:
    SECRET_KEY = env.str("SECRET_KEY", default="")
    if not SECRET_KEY:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off (see README.md).")

ALLOWED_HOSTS = env.list(
    "ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"] if DEBUG else ["127.0.0.1", "localhost"]
)
CSRF_TRUSTED_ORIGINS: list[str] = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Fernet keys for secrets at rest (api_secret, access_token). The first key encrypts; all decrypt,
# so a key can be rotated by prepending a new one. Derived from SECRET_KEY when not set.
FIELD_ENCRYPTION_KEYS: list[str] = env.list("FIELD_ENCRYPTION_KEYS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "channels",
    "subscriptions",
    "streaming",
    "history",
    "mocking",
    "tickerproject",  # the composition root: runticker wires the ticker from every app
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "tickerproject.throttling.LoginThrottleMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "tickerproject.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = None
ASGI_APPLICATION = "tickerproject.asgi.application"

# --- Database -------------------------------------------------------------------------------
DATABASES = {
    "default": env.dj_db_url(
        "DATABASE_URL",
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=env.int("DATABASE_CONN_MAX_AGE", default=0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the ticker read while the admin writes in embedded mode. IMMEDIATE transactions take the
    # write lock when they begin, so a write waits (up to `timeout` s) for the background backfill instead
    # of failing at once with "database is locked" when a read transaction tries to become a write.
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL;",
        }
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: cache, channel layer, Celery broker, tick publishing -----------------------------
REDIS_URL = env.str("REDIS_URL", default="")
# How long a channel stays in a group without re-joining (the Redis channel layer's group_expiry).
CHANNEL_GROUP_EXPIRY_S = 300

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "tp",
            "OPTIONS": {"CLIENT_CLASS": "django_redis.client.DefaultClient"},
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py ≥ 8 times socket reads out after 5 s by default, exactly as long as the layer's
                # blocking BZPOPMIN waits: every websocket idle for 5 s was torn down (channels_redis#422).
                "hosts": [{"address": REDIS_URL, "socket_timeout": 15.0}],
                "prefix": "tp:asgi",
                # A slow websocket client loses messages past this, then gets a fresh snapshot.
                "capacity": env.int("CHANNEL_CAPACITY", default=200),
                "expiry": 30,
                # Only chain hubs join groups, and they re-join every minute (chain_hub.GROUP_REJOIN_S);
                # a web process that died without leaving is dropped from its groups after this, not
                # after the default day of the ticker filling its dead queues.
                "group_expiry": CHANNEL_GROUP_EXPIRY_S,
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "tp"}}
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": env.int("CHANNEL_CAPACITY", default=200), "expiry": 30},
        }
    }

# --- Celery ---------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "memory://")
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=REDIS_URL or "cache+memory://")
# Without a broker the tasks run inline (the embedded schedule runner calls them on time).
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Tasks are idempotent and acked late: after a broker outage they are redelivered, so cancel the running copy.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=30 * 60)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=25 * 60)
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "Asia/Kolkata"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- Time -----------------------------------------------------------------------------------
# Datetimes are stored aware in UTC; market logic converts to MARKET_TIME_ZONE.
USE_TZ = True
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
MARKET_TIME_ZONE = "Asia/Kolkata"
LANGUAGE_CODE = "en-us"
USE_I18N = True

# --- Static ---------------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG and env.bool("STATIC_MANIFEST", default=True)
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/admin/login/"
# Failed sign-ins (admin, chain page, API token) before a 429, see tickerproject/throttling.py.
LOGIN_THROTTLE_FAILURES = env.int("LOGIN_THROTTLE_FAILURES", default=5)
LOGIN_THROTTLE_FAILURES_PER_ADDRESS = env.int("LOGIN_THROTTLE_FAILURES_PER_ADDRESS", default=20)
LOGIN_THROTTLE_WINDOW_S = env.int("LOGIN_THROTTLE_WINDOW_S", default=900)

# --- Security (production values come from the environment, see README.md) -----------------
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=False)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
if env.bool("USE_X_FORWARDED_PROTO", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# The reverse proxies (addresses or networks, comma-separated) whose X-Forwarded-For is believed, by
# uvicorn (tickerproject.serve passes it this list) and by tickerproject.client_address.
# Empty: no proxy is trusted, the connection's peer is the client (tickerproject/client_address.py).
TRUSTED_PROXIES = parse_trusted_proxies(env.list("FORWARDED_ALLOW_IPS", default=[]))
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True

# --- REST API -------------------------------------------------------------------------------
REST_FRAMEWORK = {
    # Token first: an unauthenticated API call then gets 401 with `WWW-Authenticate: Token` (not 403).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Keyed on tickerproject.client_address, like the sign-in lockout.
    "DEFAULT_THROTTLE_CLASSES": [
        "tickerproject.api_throttling.AnonRateThrottle",
        "tickerproject.api_throttling.UserRateThrottle",
    ],
    # A stock DRF throttle added later then keys on the peer, never on a raw X-Forwarded-For.
    "NUM_PROXIES": 0,
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("API_THROTTLE_ANON", default="60/min"),
        "user": env.str("API_THROTTLE_USER", default="1200/min"),
        "login": env.str("LOGIN_THROTTLE", default="10/min"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "tickerproject API",
    "DESCRIPTION": "Instruments, subscriptions, accounts, live option chains, candles and health.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Input from clients (API bodies, websocket messages, websocket handshakes) ---------------
# JSON nested deeper than this is refused: a 400 on the API, an error message on the chain websocket.
JSON_MAX_DEPTH = env.int("JSON_MAX_DEPTH", default=32)
REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"] = [
    "tickerproject.parsers.DepthLimitedJSONParser",
    "rest_framework.parsers.FormParser",
    "rest_framework.parsers.MultiPartParser",
]
# The chain websocket's client only sends {"action": "snapshot"}; a longer message gets an error.
CHAIN_WS_MAX_MESSAGE_BYTES = env.int("CHAIN_WS_MAX_MESSAGE_BYTES", default=4096)
# Websocket handshakes must come from the site's own origin (Origin host:port == Host) or one of
# these origins (or CSRF_TRUSTED_ORIGINS): tickerproject/websocket_security.py.
WEBSOCKET_ALLOWED_ORIGINS: list[str] = env.list("WEBSOCKET_ALLOWED_ORIGINS", default=[])

# --- Kite -----------------------------------------------------------------------------------
KITE_API_ROOT = env.str("KITE_API_ROOT", default="https://api.kite.trade")
KITE_WS_ROOT = env.str("KITE_WS_ROOT", default="wss://ws.kite.trade")
KITE_LOGIN_URL = env.str("KITE_LOGIN_URL", default="https://kite.zerodha.com/connect/login")
# A "Log in with Kite" round trip must come back to /kite/callback/ within this many seconds.
KITE_LOGIN_STATE_TTL_S = env.int("KITE_LOGIN_STATE_TTL_S", default=600)

# --- Ticker, mock market, history -----------------------------------------------------------
TICKER_MODE = env.str("TICKER_MODE", default="auto")  # auto | live | mock
CHAIN_GREEKS_INTERVAL_MS = env.int("CHAIN_GREEKS_INTERVAL_MS", default=200)
# The ticker hands a chain's delta to the channel layer and Redis at most this often; each web process
# pushes a chain to its websocket clients at most every CHAIN_PUBLISH_INTERVAL_MS, folding the deltas
# in between (streaming/web/chain_conflation.py).
# Prometheus scrapes of /metrics/ need "Authorization: Bearer <METRICS_TOKEN>" when it is set.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
CHAIN_STREAM_INTERVAL_MS = env.int("CHAIN_STREAM_INTERVAL_MS", default=50)
CHAIN_PUBLISH_INTERVAL_MS = env.int("CHAIN_PUBLISH_INTERVAL_MS", default=250)
# Per websocket client: chain messages waiting to be written; past this the client gets a fresh snapshot.
CHAIN_WS_SEND_QUEUE = env.int("CHAIN_WS_SEND_QUEUE", default=16)
RISK_FREE_RATE = env.float("RISK_FREE_RATE", default=0.065)
# "OI change over the last N minutes" and the OI build-up tags look back this far.
CHAIN_OI_WINDOW_MINUTES = env.float("CHAIN_OI_WINDOW_MINUTES", default=15.0)
# IV percentile and rank compare today's ATM IV with the closes of this many past sessions.
IV_HISTORY_SESSIONS = env.int("IV_HISTORY_SESSIONS", default=252)
# The ticker persists its chains' minute points (intraday series, ATM IV) and reloads the IV history
# this often, in seconds.
CHAIN_HISTORY_INTERVAL_S = env.float("CHAIN_HISTORY_INTERVAL_S", default=60.0)
MOCK_SEED = env.int("MOCK_SEED", default=20241224)
MOCK_STATE_MAX_SIZE = env.int("MOCK_STATE_MAX_SIZE", default=5000)
MOCK_TICK_INTERVAL_MS = env.int("MOCK_TICK_INTERVAL_MS", default=500)
# A full instruments dump that would delist more than this share of the listed instruments (contracts
# past their expiry aside) delists nothing unless `syncinstruments --allow-mass-delist` is run.
INSTRUMENT_SYNC_MAX_DELIST_SHARE = env.float("INSTRUMENT_SYNC_MAX_DELIST_SHARE", default=0.20)
if not 0.0 <= INSTRUMENT_SYNC_MAX_DELIST_SHARE <= 1.0:
    raise ImproperlyConfigured("INSTRUMENT_SYNC_MAX_DELIST_SHARE must be a share from 0 to 1, e.g. 0.2.")
HISTORICAL_DAYS = env.int("HISTORICAL_DAYS", default=30)
HISTORICAL_BOOTSTRAP_BATCH = env.int("HISTORICAL_BOOTSTRAP_BATCH", default=50)
HISTORICAL_INTERVALS = env.list("HISTORICAL_INTERVALS", default=["minute", "day"])
HISTORICAL_RATE_PER_SECOND = env.float("HISTORICAL_RATE_PER_SECOND", default=3.0)
# Queue a backfill for each new subscription after its commit (history.signals).
HISTORY_BACKFILL_ON_SUBSCRIBE = env.bool("HISTORY_BACKFILL_ON_SUBSCRIBE", default=True)
RELOAD_MIN_INTERVAL_S = env.float("RELOAD_MIN_INTERVAL_S", default=1.0)
RELOAD_QUEUE_MAX = env.int("RELOAD_QUEUE_MAX", default=100)
REDIS_BREAKER_FAILURES = env.int("REDIS_BREAKER_FAILURES", default=5)
REDIS_BREAKER_RESET_S = env.float("REDIS_BREAKER_RESET_S", default=5.0)

# --- Logging --------------------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact_secrets": {"()": "tickerproject.platform.log_redaction.RedactSecretsFilter"},
        "throttle_repeats": {"()": "tickerproject.platform.log_throttle.ThrottleRepeatsFilter", "interval_s": 60.0},
    },
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact_secrets"]}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # "N of M channels over capacity in group G" on every send while a member is full.
        "channels_redis.core": {"filters": ["throttle_repeats"]},
    },
}
