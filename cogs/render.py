"""Pure rendering: job state → what a message shows. No I/O here, so it is cheap to test and reason about.

Every message that carries a prompt is an embed (mentions inside embeds never
ping) and is still sent with `NO_PINGS`, so `@everyone` in a prompt stays text.
Elapsed time is a Discord relative timestamp: clients keep it ticking without
the bot spending an edit every second.

Each function takes the `locale` its reader reads in (a Discord locale code: the member's
for a job's own message and its Details, the server's for the audit line; None is English)
and renders every text in it before clipping to Discord's limits.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime

import discord

from bot import i18n
from bot.i18n import Readable, _, _n, _p
from bot.images import FittedImage, describe_reduction
from bot.jobs.progress import JobProgress, Phase, progress_bar
from bot.jobs.records import ImageLayer, JobRecord, JobState
from bot.jobs.request import ImagineRequest
from bot.jobs.runner import JobOutcome, duration_words
from bot.text import byte_size, clip

NO_PINGS = discord.AllowedMentions.none()
ATTACHMENTS_PER_MESSAGE = 10

COLOR_WORKING = discord.Colour.blurple()
COLOR_DONE = discord.Colour.green()
COLOR_FAILED = discord.Colour.red()

TITLE = "Imagine"
# Discord's embed limits: a message over any of them is refused outright.
TITLE_LIMIT = 256
DESCRIPTION_LIMIT = 4096
FIELD_LIMIT = 1024
EMBED_TOTAL_LIMIT = 6000  # title, description, field names and values, footer and author together


def embed_size(embed: discord.Embed) -> int:
    """The characters Discord counts against an embed's 6,000 total."""
    size = len(embed.title or "") + len(embed.description or "")
    size += len(embed.footer.text or "") + len(embed.author.name or "")
    return size + sum(len(field.name or "") + len(field.value or "") for field in embed.fields)


def _shortened_note(length: int, locale: str | None) -> str:
    note = _n(
        "(prompt shortened to fit Discord's limits; it has {length} character)",
        "(prompt shortened to fit Discord's limits; it has {length} characters)",
        length,
        length=f"{length:,}",
    )
    return f"\n*{i18n.render(note, locale)}*"


def _with_prompt(embed: discord.Embed, prompt: str, locale: str | None = None) -> discord.Embed:
    """Put the prompt in the description last, shortened so the whole embed stays within every limit.

    The prompt is the only part that can be thousands of characters long (operators may allow
    up to 6,000), so it gets what the fields leave of the 6,000 total.
    """
    embed.title = clip(embed.title or "", TITLE_LIMIT)
    for index, field in enumerate(embed.fields):
        if len(field.value or "") > FIELD_LIMIT:
            embed.set_field_at(
                index, name=field.name, value=clip(field.value or "", FIELD_LIMIT), inline=field.inline
            )
    room = min(DESCRIPTION_LIMIT, EMBED_TOTAL_LIMIT - embed_size(embed))
    if len(prompt) > room:
        note = _shortened_note(len(prompt), locale)
        prompt = clip(prompt, room - len(note)) + note
    embed.description = prompt
    return embed


def _base_embed(request: ImagineRequest, colour: discord.Colour, locale: str | None = None) -> discord.Embed:
    """Title and settings; the prompt is added last by `_with_prompt`, once the fields are known."""

    def t(text: Readable) -> str:
        return i18n.render(text, locale)

    embed = discord.Embed(title=TITLE, colour=colour)
    # Translators: the image model a job uses (a field name; its value is the model's name).
    embed.add_field(name=t(_("Model")), value=request.model.display_name)
    # Translators: the aspect ratio of the images (a field name; its value is e.g. "16:9").
    embed.add_field(name=t(_("Ratio")), value=request.ratio)
    if request.resolution:
        embed.add_field(name=t(_("Resolution")), value=request.resolution)
    # Translators: how many images were asked for (a field name; its value is a number).
    embed.add_field(name=t(_("Images")), value=str(request.n))
    embed.add_field(name=t(_("Requested by")), value=f"<@{request.requester_id}>")
    if request.reference_count:
        embed.add_field(name=t(_("References")), value=_references(request, locale), inline=False)
        # An embed image cannot be a spoiler: a spoilered job shows no picture outside its attachments.
        if not request.spoiler:
            embed.set_thumbnail(url=(request.reference_urls or [s.url for s in request.reference_sources])[0])
    if request.spoiler:
        embed.add_field(
            name=t(_("Spoiler")), value=t(_("🙈 The images are hidden until clicked")), inline=False
        )
    return embed


def _references(request: ImagineRequest, locale: str | None = None) -> str:
    """`3 images: [1](…) [2](…) [3](…)` — links to the copies the image service used, once uploaded."""
    count = request.reference_count
    text = i18n.render(_n("{count} image", "{count} images", count), locale)
    if request.reference_urls:
        links = " ".join(f"[{i}]({url})" for i, url in enumerate(request.reference_urls, start=1))
        if len(text) + len(links) + 2 <= FIELD_LIMIT:
            text += f": {links}"
    return text


def _since(started: datetime) -> str:
    return discord.utils.format_dt(started, "R")


def _started(phase: Readable, started: datetime) -> Readable:
    """`<phase> · started 12 seconds ago`."""
    # Translators: {status} is where the job is (e.g. "⏳ Queued"); {when} is "12 seconds ago",
    # shown by Discord in the reader's own language.
    return _("{status} · started {when}", status=phase, when=_since(started))


def status_line(state: JobProgress, started: datetime, references: int = 0, locale: str | None = None) -> str:
    """`Generating ▰▰▰▰▱▱▱▱▱▱ 42% · started 12 seconds ago`."""
    phase: Readable
    if state.phase is Phase.PREPARING:
        phase = _n(
            "📎 Preparing {count} reference image…", "📎 Preparing {count} reference images…", references
        )
    elif state.phase is Phase.WAITING:
        phase = waiting_in_line(state.ahead or 0, state.wait)
    elif state.phase is Phase.QUEUED:
        # Translators: the job waits at the image service for its turn to be made.
        phase = _("⏳ Queued")
    else:
        phase = _("🎨 Generating {bar}", bar=progress_bar(state.percent))
    parts: list[Readable] = [_started(phase, started)]
    if state.slow:
        parts.append(_("Still working — the image service is slow to answer."))
    return i18n.render(i18n.join(parts), locale)


def waiting_in_line(ahead: int, wait: float | None) -> Readable:
    """`Waiting in line — 12 ahead, about 5 seconds` (the provider takes only so many requests a second)."""
    if wait is None:
        return _("🕒 Waiting in line — {ahead} ahead", ahead=f"{ahead:,}")
    return _(
        "🕒 Waiting in line — {ahead} ahead, about {wait}", ahead=f"{ahead:,}", wait=duration_words(wait)
    )


def progress_embed(
    request: ImagineRequest, state: JobProgress, started: datetime, locale: str | None = None
) -> discord.Embed:
    """The placeholder and every progress edit."""
    embed = _base_embed(request, COLOR_WORKING, locale)
    preparing = len(request.reference_sources)
    embed.add_field(
        name=i18n.render(_("Status"), locale),
        value=status_line(state, started, preparing, locale),
        inline=False,
    )
    return _with_prompt(embed, request.prompt, locale)


WAITING_FOR_RESTART = _("⏸️ Waiting — the bot is restarting; your request will be sent when it is back")


def waiting_embed(request: ImagineRequest, started: datetime, locale: str | None = None) -> discord.Embed:
    """A job held back while the bot stops: nothing was sent yet, it is sent after the restart."""
    embed = _base_embed(request, COLOR_WORKING, locale)
    embed.add_field(
        name=i18n.render(_("Status"), locale),
        value=i18n.render(_started(WAITING_FOR_RESTART, started), locale),
        inline=False,
    )
    return embed


def _reductions(images: Sequence[FittedImage], limit: int, locale: str | None = None) -> str | None:
    reduced = [(i, img) for i, img in enumerate(images, start=1) if img.reduced]
    if not reduced:
        return None
    lines: list[Readable] = [
        _("Reduced to fit this server's upload limit of {limit}:", limit=byte_size(limit))
    ]
    lines += [
        _("• Image {number}: {change}", number=str(i), change=describe_reduction(img)) for i, img in reduced
    ]
    return clip(i18n.render(i18n.join(lines), locale), FIELD_LIMIT)


LAYER_TEXT_CHARS = 120  # one layer's description, so a long one cannot crowd out the rest


def _more_layers(count: int, locale: str | None) -> str:
    return i18n.render(_n("…and {count} more layer", "…and {count} more layers", count), locale)


def layer_list(layers: Sequence[ImageLayer | None], locale: str | None = None) -> str | None:
    """`Image 1 · base — a fox…` per layered image, in attachment order, within one field's limit."""

    def t(text: Readable) -> str:
        return i18n.render(text, locale)

    lines: list[str] = []
    listed = [(number, layer) for number, layer in enumerate(layers, start=1) if layer is not None]
    for position, (number, layer) in enumerate(listed):
        # The provider's words are shown as text, never as formatting.
        unnamed = _("base image") if layer.z_index == 0 else _("layer {number}", number=str(layer.z_index))
        name = clip(layer.name or t(unnamed), 60)
        line = t(
            _("Image {number} · **{name}**", number=str(number), name=discord.utils.escape_markdown(name))
        )
        if layer.description:
            line += f" — {discord.utils.escape_markdown(clip(layer.description, LAYER_TEXT_CHARS))}"
        more = len(listed) - position - 1
        tail = "\n" + _more_layers(more, locale) if more else ""
        if sum(len(kept) + 1 for kept in lines) + len(line) + len(tail) > FIELD_LIMIT:
            lines.append(_more_layers(len(listed) - position, locale))
            break
        lines.append(line)
    return "\n".join(lines) or None


def result_embed(
    request: ImagineRequest, outcome: JobOutcome, upload_limit: int, locale: str | None = None
) -> discord.Embed:
    """The finished message: settings, time taken, the layers of a layered image, and notes on
    reduced or missing images."""

    def t(text: Readable) -> str:
        return i18n.render(text, locale)

    embed = _base_embed(request, COLOR_DONE, locale)
    count = len(outcome.images)
    layer_count = sum(layer is not None and layer.is_layer for layer in outcome.layers)
    images = _n("{count} image", "{count} images", count - layer_count)
    took = duration_words(outcome.elapsed)
    lines: list[Readable] = [
        _(
            "✅ {images} and {layers} in {duration}",
            images=images,
            layers=_n("{count} layer", "{count} layers", layer_count),
            duration=took,
        )
        if layer_count
        else _("✅ {images} in {duration}", images=images, duration=took)
    ]
    if outcome.returned < outcome.requested:
        lines.append(
            _n(
                "The model made {returned} of the {count} image asked for.",
                "The model made {returned} of the {count} images asked for.",
                outcome.requested,
                returned=str(outcome.returned),
            )
        )
    if outcome.lost:
        lines.append(
            _n(
                "{count} image could not be downloaded.",
                "{count} images could not be downloaded.",
                outcome.lost,
            )
        )
    if count > ATTACHMENTS_PER_MESSAGE:
        lines.append(
            _(
                "Images 1–{last} are here; the rest are in the replies below.",
                last=str(ATTACHMENTS_PER_MESSAGE),
            )
        )
    embed.add_field(name=t(_("Status")), value=t(i18n.join(lines)), inline=False)
    layers = layer_list(outcome.layers, locale)
    if layers:
        embed.add_field(name=t(_("Layers")), value=layers, inline=False)
    notes = _reductions(outcome.images, upload_limit, locale)
    if notes:
        embed.add_field(name=t(_("Reduced images")), value=notes, inline=False)
    return _with_prompt(embed, request.prompt, locale)


def overflow_text(first: int, last: int, total: int, locale: str | None = None) -> str:
    """Content of a follow-up that carries images past the first ten."""
    if first != last:
        text = _("Images {first}–{last} of {total}", first=str(first), last=str(last), total=str(total))
    else:
        text = _("Image {number} of {total}", number=str(first), total=str(total))
    return i18n.render(text, locale)


def failure_embed(
    request: ImagineRequest, message: Readable, elapsed: float, locale: str | None = None
) -> discord.Embed:
    """The message when a job ends without images."""
    embed = _base_embed(request, COLOR_FAILED, locale)
    lines = [
        _("❌ {reason}", reason=message),
        _("(after {duration})", duration=duration_words(elapsed)),
    ]
    embed.add_field(
        name=i18n.render(_("Status"), locale),
        value=clip(i18n.render(i18n.join(lines), locale), FIELD_LIMIT),
        inline=False,
    )
    return _with_prompt(embed, request.prompt, locale)


def message_link(guild_id: int | None, channel_id: int, message_id: int) -> str:
    return f"https://discord.com/channels/{guild_id or '@me'}/{channel_id}/{message_id}"


AUDIT_PROMPT_CHARS = 120


def audit_line(
    job: JobRecord, request: ImagineRequest, failure: Readable | None = None, locale: str | None = None
) -> str:
    """`✅ @member in #channel · Seedream 5.0 · 4 images · "a red fox…" · jump` (one line, pings no one).

    `locale` is the server's (the audit channel is read by its moderators); `failure` is why the
    job failed, when known as a text (else the record's English `error`)."""

    def t(text: Readable) -> str:
        return i18n.render(text, locale)

    prompt = " ".join(request.prompt.split()).replace("`", "'")
    prompt = clip(prompt, AUDIT_PROMPT_CHARS)
    outcome: Readable
    if job.state is JobState.DONE:
        outcome = _n(
            "✅ {delivered}/{count} image",
            "✅ {delivered}/{count} images",
            job.n,
            delivered=str(job.generated_images),
        )
    else:
        reason = clip(t(failure or job.error or _("unknown error")), 150)
        outcome = _("❌ failed: {reason}", reason=reason)
    quoted = f"“{prompt}”"
    if job.spoiler:
        # The result is a spoiler, so the words describing it are one too.
        quoted = t(_("🙈 spoiler · ||{prompt}||", prompt=quoted.replace("|", "¦")))
    parts = [
        t(
            _(
                "{outcome} · {member} in {channel}",
                outcome=outcome,
                member=f"<@{job.user_id}>",
                channel=f"<#{job.channel_id}>",
            )
        ),
        request.model.display_name,
        quoted,
    ]
    if job.message_id is not None:
        parts.append(
            t(_("[message]({link})", link=message_link(job.guild_id, job.channel_id, job.message_id)))
        )
    return clip(" · ".join(parts), 2000)


def forget_audit_line(admin_id: int, member_id: int, forgotten: int, locale: str | None = None) -> str:
    """`🧹 @admin deleted the job history of @member here (3 finished jobs)` (one line, pings no one)."""
    text = _n(
        "🧹 {admin} deleted the job history of {member} here ({count} finished job) "
        "with /imagine-admin forget",
        "🧹 {admin} deleted the job history of {member} here ({count} finished jobs) "
        "with /imagine-admin forget",
        forgotten,
        admin=f"<@{admin_id}>",
        member=f"<@{member_id}>",
    )
    return i18n.render(text, locale)


def _when(timestamp: float | None) -> str:
    return discord.utils.format_dt(datetime.fromtimestamp(timestamp, UTC), "f") if timestamp else "—"


# How a job's state reads in its Details (the record keeps the English word).
_STATE_WORDS = {
    JobState.ACCEPTED: _p("job state", "accepted"),
    JobState.SUBMITTING: _p("job state", "submitting"),
    JobState.RUNNING: _p("job state", "running"),
    JobState.DELIVERING: _p("job state", "delivering"),
    JobState.DONE: _p("job state", "done"),
    JobState.FAILED: _p("job state", "failed"),
}


def details_embed(job: JobRecord, request: ImagineRequest, locale: str | None = None) -> discord.Embed:
    """Everything about one job, for the Details button (private); always within Discord's embed limits."""

    def t(text: Readable) -> str:
        return i18n.render(text, locale)

    embed = discord.Embed(title=t(_("Job {id}", id=str(job.id))))
    embed.add_field(name=t(_("Model")), value=f"{request.model.display_name} (`{request.model.id}`)")
    embed.add_field(name=t(_("Ratio")), value=request.ratio)
    embed.add_field(name=t(_("Resolution")), value=request.resolution or "—")
    # Translators: the prompt-optimisation mode (a field name; its value is "fast" or "standard").
    embed.add_field(name=t(_("Speed")), value=request.speed or "—")
    embed.add_field(name=t(_("Watermark")), value=t(_("yes") if request.watermark else _("no")))
    delivered = job.generated_images
    images = (
        t(_("{delivered} of {count} delivered", delivered=str(delivered), count=str(job.n)))
        if job.is_final
        else str(job.n)
    )
    embed.add_field(name=t(_("Images")), value=images)
    embed.add_field(name=t(_("Requested by")), value=f"<@{job.user_id}>")
    embed.add_field(name=t(_("State")), value=t(_STATE_WORDS.get(job.state, job.state.value)))
    if request.reference_count:
        embed.add_field(name=t(_("References")), value=_references(request, locale), inline=False)
    timings: list[Readable] = [
        # Translators: when the member asked for the job; {when} is a date and time.
        _("Asked {when}", when=_when(job.created_at)),
        # Translators: when the job was sent to the image service; {when} is a date and time.
        _("Sent {when}", when=_when(job.submitted_at)),
        _("Ended {when}", when=_when(job.finished_at)),
    ]
    if job.finished_at:
        timings.append(_("Took {duration}", duration=duration_words(job.finished_at - job.created_at)))
    embed.add_field(name=t(_("Timings")), value=t(i18n.join(timings)), inline=False)
    embed.add_field(
        name=t(_("Task id")),
        value=f"`{job.task_id}`" if job.task_id else t(_("— (never sent)")),
        inline=False,
    )
    layers = layer_list([image.layer for image in job.delivered_images], locale)
    if layers:
        embed.add_field(name=t(_("Layers")), value=layers, inline=False)
    if job.error:
        embed.add_field(name=t(_("Error")), value=clip(job.error, FIELD_LIMIT), inline=False)
    return _with_prompt(embed, request.prompt, locale)


def _kept_for_history(job: JobRecord) -> bool:
    """A finished job whose images reached no one (a user install's token expired and the member's
    DMs were closed): /imagine-history is where they are."""
    images = job.delivered_images
    return job.state is JobState.DONE and bool(images) and all(i.message_id is None for i in images)


def _kept_images(job: JobRecord) -> Readable:
    """The links of a kept result while the image service keeps them (about a day)."""
    urls = job.result_urls or ()
    if not urls or (job.result_expires_at is not None and job.result_expires_at <= time.time()):
        return _(" · not delivered (your DMs were closed) and the links have expired — use Reroll")
    links = " ".join(f"[{number}]({url})" for number, url in enumerate(urls, start=1))
    if job.result_expires_at is None:
        return _(" · not delivered (your DMs were closed), here: {links}", links=links)
    until = discord.utils.format_dt(datetime.fromtimestamp(job.result_expires_at, UTC), "R")
    return _(
        " · not delivered (your DMs were closed), here, until {until}: {links}", until=until, links=links
    )


def history_text(jobs: Sequence[JobRecord], locale: str | None = None) -> str:
    """A member's recent jobs, one line each, newest first (for /imagine-history)."""

    def t(text: Readable) -> str:
        return i18n.render(text, locale)

    lines: list[str] = []
    for job in jobs:
        prompt = clip(" ".join(job.prompt.split()).replace("`", "'"), 40)
        outcome: Readable
        if job.state is JobState.DONE:
            outcome = _n("✅ {count} image", "✅ {count} images", job.generated_images)
        elif job.state is JobState.FAILED:
            outcome = _("❌ failed")
        else:
            outcome = _("⏳ running")
        when = discord.utils.format_dt(datetime.fromtimestamp(job.created_at, UTC), "R")
        line = f"**{job.id}** · {t(outcome)} · “{prompt}” · {when}"
        if _kept_for_history(job):
            line += t(_kept_images(job))
        elif job.message_id is not None:
            link = message_link(job.guild_id, job.channel_id, job.message_id)
            line += " · " + t(_("[open]({link})", link=link))
        if sum(len(kept) + 1 for kept in lines) + len(line) > 2000:
            break  # whole lines only: a clipped link is worse than one line fewer
        lines.append(line)
    return "\n".join(lines)
