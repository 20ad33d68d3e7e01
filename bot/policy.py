"""The one place that decides whether a member may run a job, and what it costs in quota.

`admit` answers "may this member run this?": it applies the fixed rules (`check`: the
operator's, then the server's) and returns the quota plan (`quota_plan`: which
counters the job is charged against (reserved atomically with the job record, see
`bot.quota`); `quota_refusal` words a limit that was hit. Every refusal names the
rule and what to do, and is raised before anything reaches the image API.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.blocklist import Blocklist
from bot.guild_settings import GuildSettings
from bot.i18n import Text, TextError, _, _n
from bot.jobs.request import ImagineRequest
from bot.quota import Cooldown, Limit, QuotaExceededError, QuotaPlan, day_key, month_key, next_day, next_month
from bot.text import relative_time


@dataclass(frozen=True)
class OperatorRules:
    """What the bot's operator decides for every server (from the environment)."""

    global_daily_cap: int | None = None  # images per member per day, across all servers and DMs
    owner_ids: frozenset[int] = frozenset()  # exempt from limits
    allowed_guild_ids: frozenset[int] | None = None  # None: any server
    allow_dms: bool = False
    watermark: bool = False  # whether images carry the provider's watermark unless a server says
    # The operator's own prompt blocklist (OPERATOR_BLOCKLIST_FILE): applies everywhere, before any
    # server's list, and is the only list where the bot is used from a user install.
    blocklist: Blocklist | None = None


@dataclass(frozen=True)
class Requester:
    """Who asks, and where."""

    user_id: int
    guild_id: int | None
    channel_id: int
    parent_channel_id: int | None = None  # a thread's channel
    role_ids: frozenset[int] = frozenset()
    locale: str | None = None  # the server's Discord locale: its language's letters are not look-alikes
    # The server installed the bot. False for a user install used in a server that never did: it has
    # no settings of its own there, and only the operator's rules apply.
    server_installed: bool = True


class RefusedError(TextError):
    """The request is not allowed; `text` tells the member why and what to do."""


def _channels(ids: tuple[int, ...]) -> str:
    return ", ".join(f"<#{c}>" for c in ids)


def _names(values: tuple[str, ...]) -> str:
    return ", ".join(f"`{v}`" for v in values)


def guild_allowed(operator: OperatorRules, guild_id: int) -> bool:
    return operator.allowed_guild_ids is None or guild_id in operator.allowed_guild_ids


def check(
    settings: GuildSettings | None, operator: OperatorRules, who: Requester, request: ImagineRequest
) -> None:
    """Raise `RefusedError` if a fixed rule forbids this request (quotas are checked on reservation).

    Direct messages and private channels (no server) follow `ALLOW_DMS`; `ALLOWED_GUILD_IDS` applies
    to every server, including one where a member uses the bot from a user install. A server that
    never installed the bot has no rules of its own: only the operator's apply there.
    """
    if who.guild_id is None:
        if not operator.allow_dms:
            raise RefusedError(
                _("Image generation is not available in direct messages. Use /imagine in a server.")
            )
        _check_operator_blocklist(operator, who, request)
        return
    if not guild_allowed(operator, who.guild_id):
        raise RefusedError(_("This bot is not available in this server."))
    _check_operator_blocklist(operator, who, request)
    if not who.server_installed:
        return
    assert settings is not None
    if not settings.enabled:
        raise RefusedError(
            _("Image generation is turned off in this server. A server admin can turn it back on.")
        )
    if who.user_id in settings.banned_users:
        raise RefusedError(_("You are not allowed to generate images in this server."))

    channels = {who.channel_id, who.parent_channel_id} - {None}
    if channels & set(settings.denied_channels) or (
        settings.allowed_channels and not channels & set(settings.allowed_channels)
    ):
        raise RefusedError(
            _(
                "Image generation is not allowed in this channel. It is allowed in {channels}.",
                channels=_channels(settings.allowed_channels),
            )
            if settings.allowed_channels
            else _("Image generation is not allowed in this channel. Try another channel.")
        )
    if settings.allowed_roles and not who.role_ids & set(settings.allowed_roles):
        roles = ", ".join(f"<@&{r}>" for r in settings.allowed_roles)
        raise RefusedError(
            _("Image generation here is for members with one of these roles: {roles}.", roles=roles)
        )

    if settings.allowed_models and request.model.id not in settings.allowed_models:
        raise RefusedError(
            _(
                "This server does not allow {model}. Allowed models: {models}.",
                model=request.model.display_name,
                models=_names(settings.allowed_models),
            )
        )
    if (
        settings.allowed_resolutions
        and request.resolution
        and request.resolution not in settings.allowed_resolutions
    ):
        raise RefusedError(
            _(
                "This server does not allow resolution `{resolution}`. Allowed: {resolutions}.",
                resolution=request.resolution,
                resolutions=_names(settings.allowed_resolutions),
            )
        )
    if settings.allowed_speeds and request.speed and request.speed not in settings.allowed_speeds:
        raise RefusedError(
            _(
                "This server does not allow speed `{speed}`. Allowed: {speeds}.",
                speed=request.speed,
                speeds=_names(settings.allowed_speeds),
            )
        )
    if settings.max_n is not None and request.n > settings.max_n:
        raise RefusedError(
            _n(
                "This server allows at most {count} image per request; you asked for {asked}. Lower `n`.",
                "This server allows at most {count} images per request; you asked for {asked}. Lower `n`.",
                settings.max_n,
                asked=request.n,
            )
        )
    if settings.max_references is not None and request.reference_count > settings.max_references:
        raise RefusedError(
            _n(
                "This server allows at most {count} reference image; you gave {given}.",
                "This server allows at most {count} reference images; you gave {given}.",
                settings.max_references,
                given=request.reference_count,
            )
        )
    if settings.blocklist and settings.compiled_blocklist.match(request.prompt, who.locale) is not None:
        raise RefusedError(
            _(
                "Your prompt contains a word or phrase this server does not allow. "
                "Change the prompt and try again."
            )
        )


def _check_operator_blocklist(operator: OperatorRules, who: Requester, request: ImagineRequest) -> None:
    if operator.blocklist and operator.blocklist.match(request.prompt, who.locale) is not None:
        raise RefusedError(
            _(
                "Your prompt contains a word or phrase this bot does not allow. "
                "Change the prompt and try again."
            )
        )


def watermark(settings: GuildSettings | None, operator: OperatorRules) -> bool:
    """Whether a job's images are to carry the provider's watermark: the server's choice, else the
    operator's default."""
    if settings is None or settings.watermark is None:
        return operator.watermark
    return settings.watermark


def quota_plan(
    settings: GuildSettings | None, operator: OperatorRules, who: Requester, n: int, now: float
) -> QuotaPlan:
    """The counters a job of `n` images is charged against. Everything is counted (usage
    figures and quotas set mid-day stay exact); owners are never refused."""
    exempt = who.user_id in operator.owner_ids
    day, month = day_key(now), month_key(now)
    end_of_day, end_of_month = next_day(now), next_month(now)

    def limit(key: str, value: int | None, rule: str, resets_at: float | None) -> Limit:
        return Limit(key=key, limit=None if exempt else value, rule=rule, resets_at=resets_at)

    images = [limit(f"u:{who.user_id}:{day}", operator.global_daily_cap, "global_daily", end_of_day)]
    active: list[Limit] = []
    cooldown = None
    if who.guild_id is not None and settings is not None:
        g, u = who.guild_id, who.user_id
        images += [
            limit(f"m:{g}:{u}:{day}", settings.member_daily_quota(who.role_ids), "member_daily", end_of_day),
            limit(f"g:{g}:{day}", settings.daily_server_quota, "server_daily", end_of_day),
            limit(f"g:{g}:{month}", settings.monthly_server_quota, "server_monthly", end_of_month),
        ]
        active = [
            limit(f"am:{g}:{u}", settings.max_concurrent_member, "member_active", None),
            limit(f"ag:{g}", settings.max_concurrent_server, "server_active", None),
        ]
        if settings.cooldown_seconds and not exempt:
            cooldown = Cooldown(key=f"cd:{g}:{u}", seconds=settings.cooldown_seconds)
    return QuotaPlan(images=n, image_limits=tuple(images), active_limits=tuple(active), cooldown=cooldown)


def admit(
    settings: GuildSettings | None,
    operator: OperatorRules,
    who: Requester,
    request: ImagineRequest,
    now: float,
) -> QuotaPlan:
    """May `who` run `request` here? The quota plan to reserve with the job record if so;
    `RefusedError` (saying why and what to do) if a fixed rule forbids it.

    `settings` are the server's (None in direct messages), their blocklist already prepared for
    `who.locale` (compiling one takes long enough to belong off the event loop). Limits that
    count (quotas, running jobs, cooldown) are only known when the plan is reserved.
    """
    check(settings, operator, who, request)
    return quota_plan(settings, operator, who, request.n, now)


def quota_refusal(error: QuotaExceededError) -> Text:
    """Plain words for a limit that was hit, with when it resets.

    One whole sentence per rule and case (translators need each sentence whole); `when` is
    Discord's relative timestamp, which each reader's client shows in their own language.
    """
    limit, rule = error.limit, error.limit.rule
    when = relative_time(error.retry_at) if error.retry_at else ""
    left = max(0, (limit.limit or 0) - error.used)
    if rule == "cooldown":
        return _("Slow down — you can generate again {when}.", when=when)
    if rule == "member_active":
        return _n(
            "You already have {count} job running — wait for one to finish and try again.",
            "You already have {count} jobs running — wait for one to finish and try again.",
            error.used,
        )
    if rule == "server_active":
        return _n(
            "This server already has {count} job running — try again in a minute.",
            "This server already has {count} jobs running — try again in a minute.",
            error.used,
        )
    values = {"left": left, "limit": limit.limit, "asked": error.asked, "when": when}
    if left > 0:
        return {
            "member_daily": _(
                "You have {left} of your {limit} daily images left and you asked for {asked}. "
                "Ask for {left} or fewer — the limit resets {when}.",
                **values,
            ),
            "global_daily": _(
                "You have {left} of your {limit} daily (for this bot) images left and you asked for "
                "{asked}. Ask for {left} or fewer — the limit resets {when}.",
                **values,
            ),
            "server_daily": _(
                "This server has {left} of its {limit} daily images left and you asked for {asked}. "
                "Ask for {left} or fewer — the limit resets {when}.",
                **values,
            ),
            "server_monthly": _(
                "This server has {left} of its {limit} monthly images left and you asked for {asked}. "
                "Ask for {left} or fewer — the limit resets {when}.",
                **values,
            ),
        }[rule]
    return {
        "member_daily": _("Daily limit of {limit} images reached — resets {when}.", **values),
        "global_daily": _("Daily (for this bot) limit of {limit} images reached — resets {when}.", **values),
        "server_daily": _(
            "This server's daily limit of {limit} images is reached — resets {when}.", **values
        ),
        "server_monthly": _(
            "This server's monthly limit of {limit} images is reached — resets {when}.", **values
        ),
    }[rule]
