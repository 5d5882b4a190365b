"""Runnable examples of celery-alerting (a package only so that ``examples.flask_app.app`` imports)."""
