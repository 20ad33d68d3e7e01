"""A Discord-free client for the ToAPIs image generation API.

The package is split by layer: :mod:`~bot.toapis.errors` (the error family),
:mod:`~bot.toapis.models` (parsed answers and the tolerant parsing functions),
:mod:`~bot.toapis.downloads` (file downloads and their address guard) and
:mod:`~bot.toapis.client` (:class:`ToAPIsClient`: one session, requests and their retries).
The public names are re-exported here, so callers write ``from bot import toapis``.

Everything here raises exceptions from the :class:`ToAPIsError` family; their ``str()`` is a
short plain-English sentence that is safe to show to users and to log (never the API key,
never raw JSON).
"""

from __future__ import annotations

from bot.toapis.client import USER_AGENT, ToAPIsClient
from bot.toapis.downloads import is_public_address
from bot.toapis.errors import (
    AuthenticationError,
    BadRequestError,
    DownloadRefusedError,
    DownloadTooLargeError,
    InsufficientBalanceError,
    InvalidResponseError,
    RateLimitedError,
    ServerError,
    SubmissionResponseInvalidError,
    SubmissionUnconfirmedError,
    TaskFailedError,
    ToAPIsConnectionError,
    ToAPIsError,
    ToAPIsTimeoutError,
)
from bot.toapis.models import (
    Balance,
    ResultImage,
    TaskStatus,
    extract_error_code,
    extract_error_message,
    parse_balance,
    parse_retry_after,
    parse_task,
)

__all__ = [
    "USER_AGENT",
    "AuthenticationError",
    "BadRequestError",
    "Balance",
    "DownloadRefusedError",
    "DownloadTooLargeError",
    "InsufficientBalanceError",
    "InvalidResponseError",
    "RateLimitedError",
    "ResultImage",
    "ServerError",
    "SubmissionResponseInvalidError",
    "SubmissionUnconfirmedError",
    "TaskFailedError",
    "TaskStatus",
    "ToAPIsClient",
    "ToAPIsConnectionError",
    "ToAPIsError",
    "ToAPIsTimeoutError",
    "extract_error_code",
    "extract_error_message",
    "is_public_address",
    "parse_balance",
    "parse_retry_after",
    "parse_task",
]
