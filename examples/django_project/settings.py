"""Settings of the example project: alerting through Django's normal LOGGING setting.

Read from the environment: ALERTING_BROKER_URL, ALERTING_QUEUE, DJANGO_DEBUG, DJANGO_ALLOWED_HOSTS,
DJANGO_SECRET_KEY (see manage.py). No database: the example has no models.
"""

from __future__ import annotations

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "0").lower() in ("1", "true", "yes")
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")

INSTALLED_APPS = ["alerting.contrib.django.AlertingConfig"]  # the system checks (manage.py check)
MIDDLEWARE = [
    # First: its context covers the whole request, and it alerts only on exceptions no other middleware handled.
    "alerting.contrib.django.AlertingMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]
ROOT_URLCONF = "examples.django_project.urls"
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
TIME_ZONE = "UTC"

# Personal data (user id, client address, submitted form fields) stays out of alerts unless SEND_PII is True.
# Unhandled view exceptions are logged as CRITICAL on the "request.unhandled" logger (ALERTING["LOGGER"]).
ALERTING = {"SEND_PII": False}

ALERTING_BROKER_URL = os.environ.get("ALERTING_BROKER_URL", "redis://localhost:6379/0")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
        # CRITICAL and above (the default level). Nothing connects until the first alert, and a broker outage
        # never slows a request down. Keep it at CRITICAL: at ERROR, Django's own "django.request" record of a
        # view exception would alert a second time (manage.py check warns about it: alerting.W003).
        "alerts": {
            "class": "alerting.AlertHandler",
            "broker_url": ALERTING_BROKER_URL,
            "queue": os.environ.get("ALERTING_QUEUE", "alerts"),
            "service": "django-example",
        },
    },
    # On the root logger: "request.unhandled" and the project's own loggers both reach it.
    "root": {"handlers": ["console", "alerts"], "level": "INFO"},
}
