"""Signed webhooks from ToAPIs: results the moment they are ready.

Split by layer: `signing` (the secrets and the documented signature check), `events` (the
event body and the task status it stands for), `inbox` (store once, hand over to the job,
relay between processes; imported from `bot.webhooks.inbox`, as it needs the database) and
`setup` (what `--check` verifies). Discord-free.
"""

from __future__ import annotations

from bot.webhooks.events import WebhookEvent, parse_event, task_status
from bot.webhooks.signing import SignatureError, SigningSecret, parse_signing_secret, verify_signature

__all__ = [
    "SignatureError",
    "SigningSecret",
    "WebhookEvent",
    "parse_event",
    "parse_signing_secret",
    "task_status",
    "verify_signature",
]
