"""Flask integration: ``Alerting(app)`` / ``init_app(app)`` builds one ``AlertHandler`` per app from its
``ALERTING_*`` config keys, attaches it to ``app.logger``, and gives each request its alert context.

    app = Flask(__name__)
    app.config["ALERTING_SERVICE"] = "shop"            # every AlertHandler keyword as ALERTING_<NAME>, plus
    alerting = Alerting(app)                           # ALERTING_SEND_PII (default False)

Records logged on other loggers (``logging.getLogger(__name__)`` in a blueprint or a helper module) do not reach
``app.logger`` and so do not alert. To alert on those too, attach the handler to the root logger instead:
``app.config["ALERTING_LOGGER"] = "root"`` (or ``Alerting(logger="root")``); ``"app"`` (``app.logger``) is the
default. ``app.logger`` propagates to the root logger, so its records still alert, once.

Settings, highest precedence first: ``app.config["ALERTING_<NAME>"]``, then ``Alerting(<name>=...)``, then the
handler's defaults (the broker from the ``ALERTING_BROKER_URL`` environment variable, level CRITICAL). The
service defaults to ``app.name``. State lives in ``app.extensions["alerting"]`` (an :class:`AlertingState`), so
one ``Alerting()`` can serve several apps (application factories). Configure logging before ``init_app``:
``dictConfig`` closes the handlers it finds on the loggers it configures, ``app.logger`` included.

How an unhandled exception becomes an alert: Flask logs it on ``app.logger`` at ERROR ("Exception on /path"),
below the handler's CRITICAL. On Flask's ``got_request_exception`` signal the extension logs one CRITICAL record
on ``app.logger`` instead, located at the raise site, so alerts group by failing code. Exceptions that an error
handler of the app handles, and HTTP errors (``abort(404)``), are not alerted. With ``ALERTING_LEVEL`` at ERROR
or below, Flask's own record for that exception is filtered out of the handler: one alert per exception.

The context (``method``, ``path``, ``query_string`` with secret-looking values hidden) is set on Flask's
``request_started`` signal, before any ``before_request`` hook, and reset on ``request_tearing_down``. With
``ALERTING_SEND_PII`` it also holds ``remote_addr`` and, given ``Alerting(user_id=callable)``, ``user_id`` (the
callable runs once per request, at its start). Request bodies are never included.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask, got_request_exception, has_request_context, request, request_started, request_tearing_down

from alerting.contrib import log_unhandled, parse_flag, parse_level, request_context
from alerting.errors import ConfigError
from alerting.producer.context import reset_context, set_context
from alerting.producer.handler import AlertHandler
from alerting.producer.redact import DEFAULT_SECRET_KEYS, Redactor
from alerting.shared.config import parse_choice

__all__ = [
    "EXTENSION",
    "HANDLER_KWARGS",
    "LOGGER_CHOICES",
    "Alerting",
    "AlertingState",
    "build_handler",
    "handler_kwargs",
]

EXTENSION = "alerting"
#: AlertHandler's keyword arguments, each settable as app.config["ALERTING_<NAME>"]. Derived, so new ones follow.
HANDLER_KWARGS = tuple(
    name for name, p in inspect.signature(AlertHandler).parameters.items() if p.kind is p.KEYWORD_ONLY
)
#: Where ``ALERTING_LOGGER`` attaches the handler: ``app.logger`` ("app") or the root logger ("root").
LOGGER_CHOICES = ("app", "root")
_RESET = "alerting.context_reset"  # keys in the WSGI environ: per request, whatever the app context does
_UNHANDLED = "alerting.unhandled"


@dataclass(frozen=True)
class AlertingState:
    """What ``init_app`` keeps in ``app.extensions["alerting"]``."""

    handler: AlertHandler
    send_pii: bool
    user_id: Callable[[], object] | None
    is_secret: Callable[[str], bool]
    logger: logging.Logger | None = None  # the logger the handler is attached to (app.logger or the root logger)


class Alerting:
    """The Flask extension. Keyword arguments are AlertHandler's, as defaults under each app's config."""

    def __init__(
        self,
        app: Flask | None = None,
        *,
        send_pii: bool = False,
        user_id: Callable[[], object] | None = None,
        logger: str = "app",
        **handler_defaults: Any,
    ) -> None:
        unknown = sorted(set(handler_defaults) - set(HANDLER_KWARGS))
        if unknown:
            raise TypeError(f"Alerting() got unexpected keyword arguments {unknown}; expected {HANDLER_KWARGS}")
        self.send_pii = send_pii
        self.user_id = user_id
        self.logger = parse_choice("logger", logger, LOGGER_CHOICES)
        self.handler_defaults = handler_defaults
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        if EXTENSION in app.extensions:
            raise RuntimeError("Alerting is already set up on this app; a second handler would alert twice")
        kwargs = handler_kwargs(app.config, self.handler_defaults, service=app.name)
        send_pii = parse_flag("ALERTING_SEND_PII", app.config.get("ALERTING_SEND_PII", self.send_pii))
        where = _logger_choice(app.config.get("ALERTING_LOGGER", self.logger))
        handler = build_handler(app.config, kwargs)
        handler.addFilter(_not_flask_duplicate)
        is_secret = Redactor(kwargs.get("secret_keys", DEFAULT_SECRET_KEYS)).is_secret_key
        logger = logging.getLogger() if where == "root" else app.logger
        app.extensions[EXTENSION] = AlertingState(handler, send_pii, self.user_id, is_secret, logger)
        logger.addHandler(handler)
        # Connected for this app only; module-level receivers, so blinker's weak references stay alive.
        request_started.connect(_begin_request, app)
        request_tearing_down.connect(_end_request, app)
        got_request_exception.connect(_alert_unhandled, app)


def handler_kwargs(config: Mapping[str, Any], defaults: Mapping[str, Any], *, service: str) -> dict[str, Any]:
    """AlertHandler's keyword arguments: ``ALERTING_<NAME>`` config keys over ``defaults`` over ``service``."""
    kwargs = {"service": service, **defaults}
    for name in HANDLER_KWARGS:
        key = f"ALERTING_{name.upper()}"
        if key in config:
            kwargs[name] = config[key]
    if "level" in kwargs:
        setting = "ALERTING_LEVEL" if "ALERTING_LEVEL" in config else "level"
        kwargs["level"] = parse_level(setting, kwargs["level"])
    return kwargs


def _logger_choice(value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError("ALERTING_LOGGER", f"expected one of {', '.join(LOGGER_CHOICES)}, got {value!r}")
    return parse_choice("ALERTING_LOGGER", value, LOGGER_CHOICES)


def build_handler(config: Mapping[str, Any], kwargs: Mapping[str, Any]) -> AlertHandler:
    """The handler, validated as it validates itself; a ConfigError names the config key the bad value came from."""
    try:
        return AlertHandler(**kwargs)
    except ConfigError as exc:
        key = f"ALERTING_{exc.setting.upper()}"
        if exc.setting in HANDLER_KWARGS and key in config:
            raise ConfigError(key, exc.problem) from exc
        raise


def _state(app: Flask) -> AlertingState | None:
    state = app.extensions.get(EXTENSION)
    return state if isinstance(state, AlertingState) else None


def _begin_request(sender: Flask, **extra: object) -> None:
    state = _state(sender)
    if state is None:
        return
    context = request_context(
        method=request.method,
        path=request.path,
        query=request.query_string.decode("utf-8", "replace"),
        is_secret=state.is_secret,
    )
    if state.send_pii:
        if request.remote_addr:
            context["remote_addr"] = request.remote_addr
        if state.user_id is not None:
            try:
                user = state.user_id()
            except Exception:  # the app's callable; its failure must not fail the request
                user = "(unavailable)"
            if user is not None:
                context["user_id"] = str(user)
    request.environ[_RESET] = set_context(context)


def _end_request(sender: Flask, **extra: object) -> None:
    token = request.environ.pop(_RESET, None)
    if token is None:
        return
    try:
        reset_context(token)
    except ValueError:  # set in another contextvars.Context (a server that copies it): clear this one
        set_context(None)


def _alert_unhandled(sender: Flask, exception: BaseException, **extra: object) -> None:
    if _state(sender) is None:
        return
    request.environ[_UNHANDLED] = exception
    log_unhandled(sender.logger, exception, method=request.method, path=request.path)


def _not_flask_duplicate(record: logging.LogRecord) -> bool:
    """False for Flask's own ERROR record of an exception already alerted by ``_alert_unhandled``."""
    try:
        if record.levelno >= logging.CRITICAL or not isinstance(record.exc_info, tuple) or not has_request_context():
            return True
        return request.environ.get(_UNHANDLED) is not record.exc_info[1]
    except Exception:  # a filter that raised would lose the record
        return True
