"""Django integration: a middleware that puts each request's context where ``AlertHandler`` finds it and turns
unhandled view exceptions into alerts, the ``ALERTING`` setting, and system checks. Reads ``django.conf.settings``.

    INSTALLED_APPS = [..., "alerting.contrib.django.AlertingConfig"]       # registers the system checks
    MIDDLEWARE = ["alerting.contrib.django.AlertingMiddleware", ...]         # first, see below
    ALERTING = {"SEND_PII": False, "LOGGER": "request.unhandled"}            # both optional; these are the defaults
    LOGGING = {..., "handlers": {"alerts": {"class": "alerting.AlertHandler", ...}},
               "root": {"handlers": ["alerts"], "level": "INFO"}}

How a view exception becomes an alert: Django logs it on ``django.request`` at ERROR, below the handler's
CRITICAL, so that record alerts nobody. The middleware's ``process_exception`` logs one CRITICAL record on the
``LOGGER`` logger instead, located at the raise site (so alerts group by failing code, not by Django's logging
call) and carrying the request context. It runs only for exceptions Django answers with a 500 (not Http404,
PermissionDenied, BadRequest, SuspiciousOperation), and, placed first in MIDDLEWARE, only when no other
middleware's ``process_exception`` handled the exception. Exceptions raised by middleware are only logged by
Django itself. ``LOGGER`` is deliberately outside ``django.*``, whose records Django's ``mail_admins`` handler
would email a second time.

Personal data (``user_id``, ``remote_addr``, and for unhandled exceptions the submitted form fields) is included
only with ``SEND_PII: True``. Form fields pass Django's exception reporter filter: ``@sensitive_post_parameters``
is honoured (even with DEBUG on: the alert leaves the machine) and secret-looking names are hidden, as are
secret-looking query-string parameters.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.apps import AppConfig
from django.conf import settings
from django.core import checks
from django.core.exceptions import BadRequest, PermissionDenied, SuspiciousOperation
from django.http import Http404
from django.http.multipartparser import MultiPartParserError
from django.utils.module_loading import import_string

from alerting.contrib import log_unhandled, parse_flag, request_context
from alerting.errors import ConfigError
from alerting.producer.context import reset_context, set_context
from alerting.producer.handler import IGNORED_LOGGERS, AlertHandler
from alerting.producer.redact import Redactor
from alerting.shared.jsonsafe import REDACTED

__all__ = ["AlertingConfig", "AlertingMiddleware", "Options", "check_setup", "read_options"]

DEFAULT_LOGGER = "request.unhandled"
MIDDLEWARE_PATH = "alerting.contrib.django.AlertingMiddleware"
# Django answers these with a 4xx response: the client's problem, not an alert.
_CLIENT_ERRORS = (Http404, PermissionDenied, BadRequest, SuspiciousOperation, MultiPartParserError)
_REDACTOR = Redactor()
_NOT_CLEANSED = object()


@dataclass(frozen=True)
class Options:
    """The ``ALERTING`` setting, validated."""

    send_pii: bool = False
    logger: str = DEFAULT_LOGGER


def read_options(raw: object) -> Options:
    """Validate the ``ALERTING`` setting; raises ConfigError naming the offending key."""
    if raw is None:
        return Options()
    if not isinstance(raw, Mapping):
        raise ConfigError("ALERTING", f"expected a dict, got {type(raw).__name__}")
    for key in raw:
        if key not in ("SEND_PII", "LOGGER"):
            raise ConfigError(f"ALERTING[{key!r}]", "unknown key; expected SEND_PII or LOGGER")
    send_pii = parse_flag("ALERTING['SEND_PII']", raw.get("SEND_PII", False))
    name = raw.get("LOGGER", DEFAULT_LOGGER)
    if not isinstance(name, str) or not name.strip():
        raise ConfigError("ALERTING['LOGGER']", f"expected a logger name, got {name!r}")
    if name.partition(".")[0] in IGNORED_LOGGERS:
        raise ConfigError("ALERTING['LOGGER']", f"AlertHandler ignores {name!r} (it avoids recursion); pick another")
    return Options(send_pii=send_pii, logger=name)


class AlertingMiddleware:
    """Sets the alert context for each request (sync or async) and alerts on unhandled view exceptions."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self.options = read_options(getattr(settings, "ALERTING", None))
        self.logger = logging.getLogger(self.options.logger)
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        if self._async:
            return self._acall(request)
        token = set_context(self._context(request))
        try:
            return self.get_response(request)
        finally:
            reset_context(token)

    async def _acall(self, request: Any) -> Any:
        token = set_context(self._context(request))
        try:
            response: Awaitable[Any] = self.get_response(request)
            return await response
        finally:
            reset_context(token)

    def process_view(self, request: Any, view: object, args: object, kwargs: object) -> None:
        # Here, unlike in __call__, AuthenticationMiddleware has run wherever it is in MIDDLEWARE. Reading
        # request.user loads the session and user: done only when personal data was asked for.
        context = getattr(request, "_alerting_context", None)
        if context is None or not self.options.send_pii:
            return
        try:
            user = getattr(request, "user", None)
            if user is not None and user.is_authenticated:
                context["user_id"] = str(user.pk)
        except Exception:  # a broken session or database fails the view, not the alert context
            context["user_id"] = "(unavailable)"

    def process_exception(self, request: Any, exception: Exception) -> None:
        if isinstance(exception, _CLIENT_ERRORS):
            return
        context = getattr(request, "_alerting_context", None)
        if context is not None and self.options.send_pii and request.method == "POST":
            # Read only now: the view has run, so reading POST cannot disturb it, and @sensitive_post_parameters
            # has marked the request.
            context["post"] = _safe_post(request)
        log_unhandled(self.logger, exception, method=str(request.method), path=str(request.path))

    def _context(self, request: Any) -> dict[str, Any]:
        context = request_context(
            method=str(request.method),
            path=str(request.path),
            query=str(request.META.get("QUERY_STRING", "")),
            is_secret=_secret_test(request),
        )
        if self.options.send_pii and request.META.get("REMOTE_ADDR"):
            context["remote_addr"] = str(request.META["REMOTE_ADDR"])
        # The dict itself is the context: process_view and process_exception add to it in place.
        request._alerting_context = context
        return context


def _reporter(request: Any) -> Any:
    # Imported late: django.views.debug pulls in the template engine, which this module's importers may not need.
    from django.views.debug import get_exception_reporter_filter

    return get_exception_reporter_filter(request)


def _secret_test(request: Any) -> Callable[[str], bool]:
    """Secret-looking names: the handler's defaults, plus whatever Django's exception reporter filter hides."""
    try:
        reporter = _reporter(request)
    except Exception:  # a broken DEFAULT_EXCEPTION_REPORTER_FILTER must not fail every request
        return _REDACTOR.is_secret_key

    def is_secret(name: str) -> bool:
        try:
            return _REDACTOR.is_secret_key(name) or reporter.cleanse_setting(name, _NOT_CLEANSED) is not _NOT_CLEANSED
        except Exception:  # a custom filter that fails: hide rather than leak
            return True

    return is_secret


def _safe_post(request: Any) -> dict[str, Any]:
    try:
        params = _reporter(request).get_post_parameters(request)
        marked = getattr(request, "sensitive_post_parameters", ())
        is_secret = _secret_test(request)
        return {
            name: REDACTED if marked == "__ALL__" or name in marked or is_secret(name) else params.get(name)
            for name in params
        }
    except Exception as exc:  # an unreadable body must not replace the exception being reported
        return {"(unreadable)": type(exc).__name__}


# -- system checks ---------------------------------------------------------------------------------------------
def check_setup(app_configs: object = None, **kwargs: object) -> list[Any]:
    """alerting.E001: ALERTING is malformed. W001: the middleware is missing. W002: no AlertHandler receives the
    unhandled-exception logger. W003: an ERROR-level AlertHandler also receives django.request (double alerts)."""
    try:
        options = read_options(getattr(settings, "ALERTING", None))
    except ConfigError as exc:
        return [checks.Error(str(exc), hint='For example: ALERTING = {"SEND_PII": False}', id="alerting.E001")]
    found: list[tuple[str, str, str]] = []
    if not _middleware_installed():
        what = "AlertingMiddleware is not in MIDDLEWARE: alerts carry no request context and unhandled view exceptions"
        found.append(("W001", f"{what} are not alerted.", f"Add {MIDDLEWARE_PATH!r} first in MIDDLEWARE."))
    if not alert_handlers(options.logger, logging.CRITICAL):
        what = f"No AlertHandler receives CRITICAL records from the {options.logger!r} logger"
        hint = (
            f"In LOGGING, attach a handler of class 'alerting.AlertHandler' to the root logger or {options.logger!r}."
        )
        found.append(("W002", f"{what}: unhandled view exceptions will not be alerted.", hint))
    if alert_handlers("django.request", logging.ERROR):
        what = "An AlertHandler at level ERROR or lower receives 'django.request' records"
        hint = "Keep that AlertHandler at CRITICAL, or keep 'django.request' records away from it."
        found.append(("W003", f"{what}: each unhandled view exception would be alerted twice.", hint))
    return [checks.Warning(message, hint=hint, id=f"alerting.{code}") for code, message, hint in found]


def alert_handlers(name: str, levelno: int) -> list[AlertHandler]:
    """The AlertHandlers a record at ``levelno`` on logger ``name`` would reach, as logging would route it."""
    start = logging.getLogger(name)
    if start.disabled or not start.isEnabledFor(levelno):
        return []
    logger: logging.Logger | None = start
    found: list[AlertHandler] = []
    while logger is not None:
        found += [h for h in logger.handlers if isinstance(h, AlertHandler) and h.level <= levelno]
        logger = logger.parent if logger.propagate else None
    return found


def _middleware_installed() -> bool:
    for path in getattr(settings, "MIDDLEWARE", None) or ():
        try:
            middleware = import_string(path) if isinstance(path, str) else path
        except ImportError:  # Django's own checks report it
            continue
        if isinstance(middleware, type) and issubclass(middleware, AlertingMiddleware):
            return True
    return False


class AlertingConfig(AppConfig):  # type: ignore[misc]
    """Add ``"alerting.contrib.django.AlertingConfig"`` to INSTALLED_APPS to get the system checks."""

    name = "alerting.contrib.django"
    label = "alerting"
    verbose_name = "celery-alerting"

    def ready(self) -> None:
        checks.register(check_setup, "alerting")
