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
from bot.jobs.request import ImagineRequest
from bot.quota import Cooldown, Limit, QuotaExceededError, QuotaPlan, day_key, month_key, next_day, next_month
from bot.text import plural, relative_time


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


class RefusedError(Exception):
    """The request is not allowed; the message tells the member why and what to do."""


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
                "Image generation is not available in direct messages. Use /imagine in a server."
            )
        _check_operator_blocklist(operator, who, request)
        return
    if not guild_allowed(operator, who.guild_id):
        raise RefusedError("This bot is not available in this server.")
    _check_operator_blocklist(operator, who, request)
    if not who.server_installed:
        return
    assert settings is not None
    if not settings.enabled:
        raise RefusedError(
            "Image generation is turned off in this server. A server admin can turn it back on."
        )
    if who.user_id in settings.banned_users:
        raise RefusedError("You are not allowed to generate images in this server.")

    channels = {who.channel_id, who.parent_channel_id} - {None}
    if channels & set(settings.denied_channels) or (
        settings.allowed_channels and not channels & set(settings.allowed_channels)
    ):
        where = (
            f"It is allowed in {_channels(settings.allowed_channels)}."
            if settings.allowed_channels
            else "Try another channel."
        )
        raise RefusedError(f"Image generation is not allowed in this channel. {where}")
    if settings.allowed_roles and not who.role_ids & set(settings.allowed_roles):
        roles = ", ".join(f"<@&{r}>" for r in settings.allowed_roles)
        raise RefusedError(f"Image generation here is for members with one of these roles: {roles}.")

    if settings.allowed_models and request.model.id not in settings.allowed_models:
        raise RefusedError(
            f"This server does not allow {request.model.display_name}. Allowed models: "
            f"{_names(settings.allowed_models)}."
        )
    if (
        settings.allowed_resolutions
        and request.resolution
        and request.resolution not in settings.allowed_resolutions
    ):
        raise RefusedError(
            f"This server does not allow resolution `{request.resolution}`. Allowed: "
            f"{_names(settings.allowed_resolutions)}."
        )
    if settings.allowed_speeds and request.speed and request.speed not in settings.allowed_speeds:
        raise RefusedError(
            f"This server does not allow speed `{request.speed}`. Allowed: {_names(settings.allowed_speeds)}."
        )
    if settings.max_n is not None and request.n > settings.max_n:
        raise RefusedError(
            f"This server allows at most {plural(settings.max_n, 'image')} per request; you asked for "
            f"{request.n}. Lower `n`."
        )
    if settings.max_references is not None and request.reference_count > settings.max_references:
        raise RefusedError(
            f"This server allows at most {plural(settings.max_references, 'reference image')}; "
            f"you gave {request.reference_count}."
        )
    if settings.blocklist and settings.compiled_blocklist.match(request.prompt, who.locale) is not None:
        raise RefusedError(
            "Your prompt contains a word or phrase this server does not allow. "
            "Change the prompt and try again."
        )


def _check_operator_blocklist(operator: OperatorRules, who: Requester, request: ImagineRequest) -> None:
    if operator.blocklist and operator.blocklist.match(request.prompt, who.locale) is not None:
        raise RefusedError(
            "Your prompt contains a word or phrase this bot does not allow. Change the prompt and try again."
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


def quota_refusal(error: QuotaExceededError) -> str:
    """Plain words for a limit that was hit, with when it resets."""
    limit, rule = error.limit, error.limit.rule
    when = relative_time(error.retry_at) if error.retry_at else None
    left = max(0, (limit.limit or 0) - error.used)
    if rule == "cooldown":
        return f"Slow down — you can generate again {when}."
    if rule == "member_active":
        return f"You already have {plural(error.used, 'job')} running — wait for one to finish and try again."
    if rule == "server_active":
        return f"This server already has {plural(error.used, 'job')} running — try again in a minute."
    # (who has the allowance, whose, which period) per image rule
    owner, whose, period = {
        "member_daily": ("You have", "your", "daily"),
        "global_daily": ("You have", "your", "daily (for this bot)"),
        "server_daily": ("This server has", "its", "daily"),
        "server_monthly": ("This server has", "its", "monthly"),
    }[rule]
    if left > 0:
        return (
            f"{owner} {left} of {whose} {limit.limit} {period} images left and you asked for {error.asked}. "
            f"Ask for {left} or fewer — the limit resets {when}."
        )
    if owner == "You have":
        return f"{period.capitalize()} limit of {limit.limit} images reached — resets {when}."
    return f"This server's {period} limit of {limit.limit} images is reached — resets {when}."
