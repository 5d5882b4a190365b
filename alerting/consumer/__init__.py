"""The worker side: what runs in the alert workers' processes, from a task message to an email (or a dead letter).

Imports ``alerting.shared``, never ``alerting.producer``: a worker learns task names and the payload's shape from
``alerting.shared.wire``, not from the application's transport.
"""
