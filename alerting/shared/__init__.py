"""What both sides share: the wire contract, the throttle policy and its stores, settings parsing, TLS, Sentinel.

Imports neither ``alerting.producer`` nor ``alerting.consumer``.
"""
