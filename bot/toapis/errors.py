"""The error family of the ToAPIs client.

Every error's ``str()`` is a short plain-English sentence that is safe to log (never the API
key, never raw JSON); its ``text`` is the same sentence as a translatable text, safe to show to
members in their own language.
"""

from __future__ import annotations

from bot.i18n import Text, _
from bot.text import limit_size

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "DownloadRefusedError",
    "DownloadTooLargeError",
    "InsufficientBalanceError",
    "InvalidResponseError",
    "RateLimitedError",
    "ServerError",
    "SubmissionResponseInvalidError",
    "SubmissionUnconfirmedError",
    "TaskFailedError",
    "ToAPIsConnectionError",
    "ToAPIsError",
    "ToAPIsTimeoutError",
]


class ToAPIsError(Exception):
    """Base class of every error raised by the ToAPIs client.

    ``str(error)`` is a short, safe, plain-English description (for logs); ``text`` the same as a
    translatable text (for members); ``status`` is the HTTP status when the error came from an
    HTTP answer.
    """

    default_message = _("Something went wrong while talking to the image service.")

    def __init__(self, message: Text | str | None = None, *, status: int | None = None) -> None:
        self.text: Text | str = message or self.default_message
        super().__init__(self.text)
        self.status = status

    def __str__(self) -> str:
        return str(self.text)


class AuthenticationError(ToAPIsError):
    """The API key was rejected (HTTP 401)."""

    default_message = _("The image service rejected the API key.")


class InsufficientBalanceError(ToAPIsError):
    """The account has no balance left or lacks permission (HTTP 402 or 403)."""

    default_message = _("The image service account has insufficient balance or lacks permission.")


class BadRequestError(ToAPIsError):
    """The request was refused (HTTP 400/404/422 and similar); see ``provider_message``."""

    default_message = _("The image service rejected the request.")

    def __init__(
        self, message: Text | str | None = None, *, status: int | None = 400, provider_message: str = ""
    ) -> None:
        if message is None and provider_message:
            message = _("The image service rejected the request: {reason}", reason=provider_message)
        super().__init__(message, status=status)
        self.provider_message = provider_message


class RateLimitedError(ToAPIsError):
    """Too many requests (HTTP 429), or the provider's submit limiter is unavailable (HTTP 503
    ``rate_limit_unavailable``, ``status`` 503); ``retry_after`` is the advised wait in seconds,
    if any. Either way nothing was accepted or charged."""

    default_message = _("The image service is rate limiting requests.")

    def __init__(
        self, message: Text | str | None = None, *, status: int | None = 429, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class ServerError(ToAPIsError):
    """The service answered with a 5xx status."""

    default_message = _("The image service had a server error.")


class ToAPIsConnectionError(ToAPIsError):
    """The connection could not be established, or it dropped."""

    default_message = _("Could not connect to the image service.")


class ToAPIsTimeoutError(ToAPIsError):
    """A request did not complete in time."""

    default_message = _("The request to the image service timed out.")


class InvalidResponseError(ToAPIsError):
    """The answer was not JSON, or lacked a required field such as the task id."""

    default_message = _("The image service sent an answer that could not be read.")


class TaskFailedError(ToAPIsError):
    """A task ended as ``failed``; ``provider_message`` says why (e.g. content policy)."""

    default_message = _("The image generation failed.")

    def __init__(
        self,
        message: Text | str | None = None,
        *,
        provider_message: str = "",
        code: str | None = None,
        status: int | None = None,
    ) -> None:
        if message is None and provider_message:
            message = _("The image generation failed: {reason}", reason=provider_message)
        super().__init__(message, status=status)
        self.provider_message = provider_message
        self.code = code


class SubmissionUnconfirmedError(ToAPIsError):
    """A submission was sent but its answer never arrived.

    It may have been accepted and charged, so it is never re-sent automatically.
    """

    default_message = _(
        "The image request was sent but the image service did not confirm it; "
        "it may have been accepted, so it was not sent again."
    )


class SubmissionResponseInvalidError(SubmissionUnconfirmedError, InvalidResponseError):
    """A submission got a success status but an unreadable body.

    The task was probably created (and charged) but its id is unknown, so this is both
    "unconfirmed" (do not re-send) and "invalid response".
    """

    default_message = _(
        "The image service accepted the request but its answer could not be read; it was not sent again."
    )


class DownloadTooLargeError(ToAPIsError):
    """A downloaded file exceeded the byte limit."""

    default_message = _("The image file is larger than the download limit.")

    def __init__(
        self, message: Text | str | None = None, *, limit: int | None = None, status: int | None = None
    ):
        if message is None and limit is not None:
            message = _(
                "The image file is larger than the download limit of {limit}.", limit=limit_size(limit)
            )
        super().__init__(message, status=status)
        self.limit = limit


class DownloadRefusedError(ToAPIsError):
    """An image address (or a redirect) leads somewhere the bot does not fetch from.

    Only HTTPS to public internet addresses is fetched, except from the image service's own
    host and the hosts the operator configured; never retried.
    """

    default_message = _("The image address is not a public HTTPS address, so it was not fetched.")
