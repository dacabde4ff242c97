# One image for every process: web (uvicorn), ticker (runticker), celery worker and beat.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .

# collectstatic imports the settings, which need a SECRET_KEY with DEBUG off; this one is used for nothing else.
RUN SECRET_KEY=collectstatic-only DEBUG=0 python manage.py collectstatic --noinput \
    && useradd --system --uid 10001 --home-dir /app app \
    && chown -R app /app

USER app
EXPOSE 8000

# uvicorn with the project's options (tickerproject/serve.py): X-Forwarded-For is believed only from the
# proxies in FORWARDED_ALLOW_IPS (default: none), the same list the sign-in lockout and API throttles use.
CMD ["python", "-m", "tickerproject.serve", "--host", "0.0.0.0", "--port", "8000"]
