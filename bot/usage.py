"""What server admins and members read about quotas and usage: texts to translate and CSV, no I/O.

- `quota_text`: what a member has left, from the very counters /imagine charges (`/imagine-quota`).
- `Period`, `summarize`, `usage_text`, `jobs_csv`: a server's usage for today or this month
  (`/imagine-admin usage`). Days and months are UTC, like the quotas.
- `prices_of`, `estimate_cost`: the period's estimated cost, from the catalog's optional
  `price_per_image` (images the jobs count × their model's price).

How the settings themselves read is `bot.settings_text`. The texts are `bot.i18n` texts, read in
the member's language (`/imagine-quota`) or the server's (the usage report); the CSV is data, its
column names and cells stay as they are in every language.

Mentions (`<@id>`, `<#id>`, `<@&id>`) are written as such; the Discord layer sends every text
with mentions disabled, so they render as names and ping no one.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.catalog import Catalog
from bot.guild_settings import GuildSettings
from bot.i18n import Joined, Readable, Text, _, _n, join
from bot.jobs.records import JobRecord, JobState
from bot.quota import QuotaPlan, day_key, month_key, next_day, next_month
from bot.text import clip, relative_time

PERIODS = ("today", "month")
TOP_MEMBERS = 5
TOP_FAILURES = 3


# --------------------------------------------------------------------------- a member's quota


def _limit_line(rule: str, left: int, limit: int, resets: Readable) -> Text:
    """`• You: 6 of 10 images left today in this server — resets in 5 hours`, one whole sentence per
    limit (who and which period are part of it, so each reads naturally in every language).

    The English says "images" whatever the number; `limit` picks the form in languages that inflect.
    """
    if rule == "server_daily":
        return _n(
            "• This server: {left} of {count} images left today — resets {resets}",
            "• This server: {left} of {count} images left today — resets {resets}",
            limit,
            left=left,
            resets=resets,
        )
    if rule == "server_monthly":
        return _n(
            "• This server: {left} of {count} images left this month — resets {resets}",
            "• This server: {left} of {count} images left this month — resets {resets}",
            limit,
            left=left,
            resets=resets,
        )
    if rule == "global_daily":
        return _n(
            "• You: {left} of {count} images left today across every server (the bot's own limit) "
            "— resets {resets}",
            "• You: {left} of {count} images left today across every server (the bot's own limit) "
            "— resets {resets}",
            limit,
            left=left,
            resets=resets,
        )
    return _n(
        "• You: {left} of {count} images left today in this server — resets {resets}",
        "• You: {left} of {count} images left today in this server — resets {resets}",
        limit,
        left=left,
        resets=resets,
    )


def quota_text(plan: QuotaPlan, used: Mapping[str, int], now: float) -> Joined:
    """What a member may still generate, from the counters `plan` names (as /imagine charges them).

    `plan` is `policy.quota_plan(...)` for this member; `used` holds the ledger's values for
    every key in it (`QuotaLedger.values`), the cooldown key holding the last request's time in ms.
    """
    lines: list[Readable] = []
    details: list[Readable] = []
    lefts: list[int] = []
    exhausted: list[float] = []
    for limit in plan.image_limits:
        if limit.limit is None:
            if limit.rule == "member_daily":
                details.append(_("• You: no daily limit of your own in this server"))
            continue
        left = max(0, limit.limit - used.get(limit.key, 0))
        lefts.append(left)
        if left == 0 and limit.resets_at:
            exhausted.append(limit.resets_at)
        # Image limits are daily or monthly, so they always reset.
        resets = relative_time(limit.resets_at) if limit.resets_at else _("never")
        details.append(_limit_line(limit.rule, left, limit.limit, resets))
    if lefts:
        lines.append(_("**Images left for you: {left}**", left=min(lefts)))
        if exhausted:
            # Every exhausted limit must reset before the member can generate again.
            lines.append(_("You can generate again {when}.", when=relative_time(max(exhausted))))
    else:
        lines.append(_("**No image quota applies to you.**"))
    lines += details

    for limit in plan.active_limits:
        if limit.limit is None:
            continue
        running = used.get(limit.key, 0)
        if limit.rule == "member_active":
            lines.append(_("Running jobs: {running} of your {limit}.", running=running, limit=limit.limit))
        else:
            lines.append(
                _("Running jobs: {running} of this server's {limit}.", running=running, limit=limit.limit)
            )
    if plan.cooldown is not None and plan.cooldown.seconds > 0:
        ready = used.get(plan.cooldown.key, 0) / 1000 + plan.cooldown.seconds
        if ready > now:
            lines.append(
                _(
                    "Cooldown: {seconds} s between requests — you can generate again {when}.",
                    seconds=plan.cooldown.seconds,
                    when=relative_time(ready),
                )
            )
        else:
            lines.append(
                _(
                    "Cooldown: {seconds} s between requests — you can generate now.",
                    seconds=plan.cooldown.seconds,
                )
            )
    return join(lines)


# --------------------------------------------------------------------------- usage


@dataclass(frozen=True)
class Period:
    """A UTC day or month: jobs created in [start, end)."""

    name: str  # "today" or "month"
    label: str  # 2026-11-21 or 2026-11
    start: float
    end: float


def period_of(name: str, now: float) -> Period:
    """The UTC day or month containing `now`."""
    if name not in PERIODS:
        raise ValueError(f"unknown period {name!r}")
    when = datetime.fromtimestamp(now, UTC)
    if name == "today":
        start = when.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
        return Period(name, day_key(now), start, next_day(now))
    start = when.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()
    return Period(name, month_key(now), start, next_month(now))


def images_of(job: JobRecord) -> int:
    """Images a job counts in quota: delivered once done, none once failed, all asked while running."""
    if job.state is JobState.DONE:
        return job.generated_images
    if job.state is JobState.FAILED:
        return 0
    return job.n


@dataclass(frozen=True)
class MemberUsage:
    user_id: int
    jobs: int
    images: int


@dataclass(frozen=True)
class UsageSummary:
    """A period's jobs, counted."""

    jobs: int
    done: int
    failed: int
    running: int
    images: int  # counted in quota (delivered, or reserved while running)
    asked: int  # the sum of `n`
    members: tuple[MemberUsage, ...]  # most images first
    failures: tuple[tuple[str, int], ...]  # (reason, how many), most frequent first


def summarize(jobs: Iterable[JobRecord]) -> UsageSummary:
    jobs = list(jobs)
    per_member: dict[int, list[int]] = {}
    for job in jobs:
        if job.forgotten:  # counted below, but no longer anyone's
            continue
        entry = per_member.setdefault(job.user_id, [0, 0])
        entry[0] += 1
        entry[1] += images_of(job)
    members = sorted(
        (MemberUsage(user, count, images) for user, (count, images) in per_member.items()),
        key=lambda m: (-m.images, -m.jobs, m.user_id),
    )
    reasons = Counter(job.error or "unknown error" for job in jobs if job.state is JobState.FAILED)
    return UsageSummary(
        jobs=len(jobs),
        done=sum(job.state is JobState.DONE for job in jobs),
        failed=sum(job.state is JobState.FAILED for job in jobs),
        running=sum(not job.is_final for job in jobs),
        images=sum(images_of(job) for job in jobs),
        asked=sum(job.n for job in jobs),
        members=tuple(members),
        failures=tuple(sorted(reasons.items(), key=lambda item: (-item[1], item[0]))),
    )


@dataclass(frozen=True)
class Price:
    """What the operator pays for one model's images (USD), as the catalog states it."""

    per_image: float
    # The provider also charges each reference image after the first (Seedream 5.0 Pro).
    bills_extra_references: bool = False


def prices_of(catalog: Catalog) -> dict[str, Price]:
    """The price of every catalog model that has a `price_per_image`, by model id."""
    return {
        spec.id: Price(spec.price_per_image, spec.extra_reference_billing)
        for spec in catalog
        if spec.price_per_image is not None
    }


def billed_images(job: JobRecord, price: Price) -> int:
    """What the provider charges a job for, in images: those it counts, plus extra references."""
    images = images_of(job)
    if price.bills_extra_references and images:
        images += max(0, job.reference_images - 1)
    return images


def job_cost(job: JobRecord, prices: Mapping[str, Price]) -> float | None:
    """A job's estimated cost in USD; None when its model has no price."""
    price = prices.get(job.model)
    return None if price is None else billed_images(job, price) * price.per_image


@dataclass(frozen=True)
class CostEstimate:
    """A period's estimated cost: what priced models cost, and what could not be priced."""

    usd: float
    unpriced_images: int  # images of models without a price, not in `usd`
    unpriced_models: tuple[str, ...]  # their model ids, sorted


def estimate_cost(jobs: Iterable[JobRecord], prices: Mapping[str, Price]) -> CostEstimate | None:
    """The period's estimated cost; None when no model has a price (the report then shows none)."""
    if not prices:
        return None
    usd, unpriced, models = 0.0, 0, set()
    for job in jobs:
        cost = job_cost(job, prices)
        if cost is not None:
            usd += cost
        elif images_of(job):
            unpriced += images_of(job)
            models.add(job.model)
    return CostEstimate(usd, unpriced, tuple(sorted(models)))


def _images(count: int) -> Text:
    return _n("{count} image", "{count} images", count)


def cost_line(period: Period, cost: CostEstimate) -> Text:
    """`**Estimated cost today:** $0.42`, saying what is left out when some models have no price."""
    usd = f"${cost.usd:,.2f}"
    if cost.unpriced_images:
        left_out = {
            "images": _images(cost.unpriced_images),
            "models": ", ".join(cost.unpriced_models),
            "usd": usd,
        }
        if period.name == "today":
            return _(
                "**Estimated cost today:** {usd} — partial: {images} of models without a price ({models}) "
                "not counted",
                **left_out,
            )
        return _(
            "**Estimated cost this month:** {usd} — partial: {images} of models without a price ({models}) "
            "not counted",
            **left_out,
        )
    if period.name == "today":
        return _("**Estimated cost today:** {usd}", usd=usd)
    return _("**Estimated cost this month:** {usd}", usd=usd)


def usage_text(
    period: Period,
    summary: UsageSummary,
    *,
    today: int,
    month: int,
    settings: GuildSettings,
    truncated: bool = False,
    cost: CostEstimate | None = None,
) -> Joined:
    """The usage report; `today` and `month` are the server's quota counters (images).

    The Discord layer clips it to one message once it is read in the server's language."""
    daily = (
        _(
            "**Today:** {images} of {allowed} allowed",
            images=_images(today),
            allowed=settings.daily_server_quota,
        )
        if settings.daily_server_quota
        else _("**Today:** {images}", images=_images(today))
    )
    monthly = (
        _(
            "**This month:** {images} of {allowed} allowed",
            images=_images(month),
            allowed=settings.monthly_server_quota,
        )
        if settings.monthly_server_quota
        else _("**This month:** {images}", images=_images(month))
    )
    jobs = {
        "jobs": summary.jobs,
        "done": summary.done,
        "failed": summary.failed,
        "running": summary.running,
        "images": _images(summary.images),
        "asked": summary.asked,
    }
    if period.name == "today":
        lines: list[Readable] = [
            _("**Image usage today** ({period}, UTC)", period=period.label),
            daily,
            monthly,
            _(
                "**Jobs today:** {jobs} — {done} done, {failed} failed, {running} running · "
                "{images} of {asked} asked for",
                **jobs,
            ),
        ]
    else:
        lines = [
            _("**Image usage this month** ({period}, UTC)", period=period.label),
            daily,
            monthly,
            _(
                "**Jobs this month:** {jobs} — {done} done, {failed} failed, {running} running · "
                "{images} of {asked} asked for",
                **jobs,
            ),
        ]
    if cost is not None:
        lines.append(cost_line(period, cost))
    if summary.members:
        lines.append(_("**Top members:**"))
        lines += [
            _(
                "{rank}. {member} — {images} ({jobs})",
                rank=i,
                member=f"<@{m.user_id}>",
                images=_images(m.images),
                jobs=_n("{count} job", "{count} jobs", m.jobs),
            )
            for i, m in enumerate(summary.members[:TOP_MEMBERS], start=1)
        ]
    if summary.failures:
        # The reasons are the jobs' recorded errors, shown as they were stored.
        lines.append(_("**Failures:** {count}", count=summary.failed))
        lines += [f"• {clip(r, 150)} ×{c}" for r, c in summary.failures[:TOP_FAILURES]]
    else:
        lines.append(_("**Failures:** none"))
    if summary.jobs:
        lines.append(
            _("The attached CSV lists every job of the period (only the first ones: there were too many).")
            if truncated
            else _("The attached CSV lists every job of the period.")
        )
    return join(lines)


CSV_COLUMNS = (
    "job_id",
    "created_utc",
    "finished_utc",
    "user_id",
    "channel_id",
    "state",
    "model",
    "ratio",
    "resolution",
    "n",
    "images",
    "references",
    "cost_usd",
    "error",
    "prompt",
    "message_url",
)


def _iso(when: float | None) -> str:
    return "" if when is None else datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# What a spreadsheet may run as a formula when it starts a cell (OWASP's CSV injection list, `|` for DDE
# and the full-width forms some locales accept), and what may start a new cell when the file is
# opened with another separator (`;` in many locales) or a line is split.
_FORMULA_STARTERS = "=+-@|\t\r\uff1d\uff0b\uff0d\uff20"
_SEPARATORS = ",;\t\r\n"
_STARTER_AFTER_SEPARATOR = re.compile(
    f"([{re.escape(_SEPARATORS)}])(?=[ {re.escape(_SEPARATORS)}]*[{re.escape(_FORMULA_STARTERS)}])"
)


def _cell(text: str | None) -> str:
    """Free text for a spreadsheet: never read as a formula, whatever separator the reader uses.

    A `'` goes before the cell and after any separator that a formula starter follows, so
    `a cat;=cmd|…` stays text even where `;` separates cells.
    """
    text = _STARTER_AFTER_SEPARATOR.sub(r"\1'", text or "")
    return "'" + text if text.lstrip(" ")[:1] in tuple(_FORMULA_STARTERS) else text


def csv_filename(guild_id: int, period: Period) -> str:
    return f"imagine-usage-{guild_id}-{period.label}.csv"


def jobs_csv(jobs: Iterable[JobRecord], prices: Mapping[str, Price] | None = None) -> bytes:
    """One row per job (UTF-8 with BOM, so spreadsheets read accents right).

    `cost_usd` is the job's estimated cost from `prices`, empty for a model without a price."""
    buffer = io.StringIO()
    # Every cell quoted: a reader that splits on another separator still keeps each cell whole.
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for job in jobs:
        url = (
            f"https://discord.com/channels/{job.guild_id or '@me'}/{job.channel_id}/{job.message_id}"
            if job.message_id is not None
            else ""
        )
        writer.writerow(
            [
                job.id,
                _iso(job.created_at),
                _iso(job.finished_at),
                "" if job.forgotten else job.user_id,
                job.channel_id,
                _cell(job.state.value),
                _cell(job.model),
                _cell(job.ratio),
                _cell(job.resolution),
                job.n,
                images_of(job),
                job.reference_images,
                "" if (cost := job_cost(job, prices or {})) is None else f"{cost:.4f}",
                _cell(job.error),
                _cell(job.prompt),
                url,
            ]
        )
    return buffer.getvalue().encode("utf-8-sig")
