"""The application side: what runs in the application's process, from ``AlertHandler.emit`` to the broker.

Imports ``alerting.shared``, never ``alerting.consumer``.
"""
