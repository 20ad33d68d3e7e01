"""Pure rendering: job state → what a message shows. No I/O here, so it is cheap to test and reason about.

Every message that carries a prompt is an embed (mentions inside embeds never
ping) and is still sent with `NO_PINGS`, so `@everyone` in a prompt stays text.
Elapsed time is a Discord relative timestamp: clients keep it ticking without
the bot spending an edit every second.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime

import discord

from bot.images import FittedImage, describe_reduction
from bot.jobs.progress import JobProgress, Phase, progress_bar
from bot.jobs.records import ImageLayer, JobRecord, JobState
from bot.jobs.request import ImagineRequest
from bot.jobs.runner import JobOutcome, duration_words
from bot.text import byte_size, clip, plural

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


def _shortened_note(length: int) -> str:
    return f"\n*(prompt shortened to fit Discord's limits; it has {length:,} characters)*"


def _with_prompt(embed: discord.Embed, prompt: str) -> discord.Embed:
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
        note = _shortened_note(len(prompt))
        prompt = clip(prompt, room - len(note)) + note
    embed.description = prompt
    return embed


def _base_embed(request: ImagineRequest, colour: discord.Colour) -> discord.Embed:
    """Title and settings; the prompt is added last by `_with_prompt`, once the fields are known."""
    embed = discord.Embed(title=TITLE, colour=colour)
    embed.add_field(name="Model", value=request.model.display_name)
    embed.add_field(name="Ratio", value=request.ratio)
    if request.resolution:
        embed.add_field(name="Resolution", value=request.resolution)
    embed.add_field(name="Images", value=str(request.n))
    embed.add_field(name="Requested by", value=f"<@{request.requester_id}>")
    if request.reference_count:
        embed.add_field(name="References", value=_references(request), inline=False)
        # An embed image cannot be a spoiler: a spoilered job shows no picture outside its attachments.
        if not request.spoiler:
            embed.set_thumbnail(url=(request.reference_urls or [s.url for s in request.reference_sources])[0])
    if request.spoiler:
        embed.add_field(name="Spoiler", value="🙈 The images are hidden until clicked", inline=False)
    return embed


def _references(request: ImagineRequest) -> str:
    """`3 images: [1](…) [2](…) [3](…)` — links to the copies the image service used, once uploaded."""
    count = request.reference_count
    text = plural(count, "image")
    if request.reference_urls:
        links = " ".join(f"[{i}]({url})" for i, url in enumerate(request.reference_urls, start=1))
        if len(text) + len(links) + 2 <= FIELD_LIMIT:
            text += f": {links}"
    return text


def _since(started: datetime) -> str:
    return discord.utils.format_dt(started, "R")


def status_line(state: JobProgress, started: datetime, references: int = 0) -> str:
    """`Generating ▰▰▰▰▱▱▱▱▱▱ 42% · started 12 seconds ago`."""
    if state.phase is Phase.PREPARING:
        text = f"📎 Preparing {plural(references, 'reference image')}…"
    elif state.phase is Phase.WAITING:
        text = waiting_in_line(state.ahead or 0, state.wait)
    elif state.phase is Phase.QUEUED:
        text = "⏳ Queued"
    else:
        text = f"🎨 Generating {progress_bar(state.percent)}"
    text += f" · started {_since(started)}"
    if state.slow:
        text += "\nStill working — the image service is slow to answer."
    return text


def waiting_in_line(ahead: int, wait: float | None) -> str:
    """`Waiting in line — 12 ahead, about 5 seconds` (the provider takes only so many requests a second)."""
    text = f"🕒 Waiting in line — {ahead:,} ahead"
    if wait is not None:
        text += f", about {duration_words(wait)}"
    return text


def progress_embed(request: ImagineRequest, state: JobProgress, started: datetime) -> discord.Embed:
    """The placeholder and every progress edit."""
    embed = _base_embed(request, COLOR_WORKING)
    preparing = len(request.reference_sources)
    embed.add_field(name="Status", value=status_line(state, started, preparing), inline=False)
    return _with_prompt(embed, request.prompt)


WAITING_FOR_RESTART = "⏸️ Waiting — the bot is restarting; your request will be sent when it is back"


def waiting_embed(request: ImagineRequest, started: datetime) -> discord.Embed:
    """A job held back while the bot stops: nothing was sent yet, it is sent after the restart."""
    embed = _base_embed(request, COLOR_WORKING)
    embed.add_field(name="Status", value=f"{WAITING_FOR_RESTART} · started {_since(started)}", inline=False)
    return embed


def _reductions(images: Sequence[FittedImage], limit: int) -> str | None:
    reduced = [(i, img) for i, img in enumerate(images, start=1) if img.reduced]
    if not reduced:
        return None
    lines = [f"Reduced to fit this server's upload limit of {byte_size(limit)}:"]
    lines += [f"• Image {i}: {describe_reduction(img)}" for i, img in reduced]
    return clip("\n".join(lines), FIELD_LIMIT)


LAYER_TEXT_CHARS = 120  # one layer's description, so a long one cannot crowd out the rest


def layer_list(layers: Sequence[ImageLayer | None]) -> str | None:
    """`Image 1 · base — a fox…` per layered image, in attachment order, within one field's limit."""
    lines: list[str] = []
    listed = [(number, layer) for number, layer in enumerate(layers, start=1) if layer is not None]
    for position, (number, layer) in enumerate(listed):
        # The provider's words are shown as text, never as formatting.
        name = clip(layer.name or ("base image" if layer.z_index == 0 else f"layer {layer.z_index}"), 60)
        line = f"Image {number} · **{discord.utils.escape_markdown(name)}**"
        if layer.description:
            line += f" — {discord.utils.escape_markdown(clip(layer.description, LAYER_TEXT_CHARS))}"
        more = len(listed) - position - 1
        tail = f"\n…and {plural(more, 'more layer')}" if more else ""
        if sum(len(kept) + 1 for kept in lines) + len(line) + len(tail) > FIELD_LIMIT:
            lines.append(f"…and {plural(len(listed) - position, 'more layer')}")
            break
        lines.append(line)
    return "\n".join(lines) or None


def result_embed(request: ImagineRequest, outcome: JobOutcome, upload_limit: int) -> discord.Embed:
    """The finished message: settings, time taken, the layers of a layered image, and notes on
    reduced or missing images."""
    embed = _base_embed(request, COLOR_DONE)
    count = len(outcome.images)
    layer_count = sum(layer is not None and layer.is_layer for layer in outcome.layers)
    made = plural(count - layer_count, "image")
    if layer_count:
        made += f" and {plural(layer_count, 'layer')}"
    status = f"✅ {made} in {duration_words(outcome.elapsed)}"
    if outcome.returned < outcome.requested:
        status += f"\nThe model made {outcome.returned} of the {outcome.requested} images asked for."
    if outcome.lost:
        status += f"\n{plural(outcome.lost, 'image')} could not be downloaded."
    if count > ATTACHMENTS_PER_MESSAGE:
        status += f"\nImages 1–{ATTACHMENTS_PER_MESSAGE} are here; the rest are in the replies below."
    embed.add_field(name="Status", value=status, inline=False)
    layers = layer_list(outcome.layers)
    if layers:
        embed.add_field(name="Layers", value=layers, inline=False)
    notes = _reductions(outcome.images, upload_limit)
    if notes:
        embed.add_field(name="Reduced images", value=notes, inline=False)
    return _with_prompt(embed, request.prompt)


def overflow_text(first: int, last: int, total: int) -> str:
    """Content of a follow-up that carries images past the first ten."""
    return f"Images {first}–{last} of {total}" if first != last else f"Image {first} of {total}"


def failure_embed(request: ImagineRequest, message: str, elapsed: float) -> discord.Embed:
    """The message when a job ends without images."""
    embed = _base_embed(request, COLOR_FAILED)
    embed.add_field(
        name="Status",
        value=clip(f"❌ {message}\n(after {duration_words(elapsed)})", FIELD_LIMIT),
        inline=False,
    )
    return _with_prompt(embed, request.prompt)


def message_link(guild_id: int | None, channel_id: int, message_id: int) -> str:
    return f"https://discord.com/channels/{guild_id or '@me'}/{channel_id}/{message_id}"


AUDIT_PROMPT_CHARS = 120


def audit_line(job: JobRecord, request: ImagineRequest) -> str:
    """`✅ @member in #channel · Seedream 5.0 · 4 images · "a red fox…" · jump` (one line, pings no one)."""
    prompt = " ".join(request.prompt.split()).replace("`", "'")
    prompt = clip(prompt, AUDIT_PROMPT_CHARS)
    if job.state is JobState.DONE:
        outcome = f"✅ {job.generated_images}/{plural(job.n, 'image')}"
    else:
        outcome = f"❌ failed: {clip(job.error or 'unknown error', 150)}"
    quoted = f"“{prompt}”"
    if job.spoiler:
        # The result is a spoiler, so the words describing it are one too.
        quoted = "🙈 spoiler · ||" + quoted.replace("|", "¦") + "||"
    parts = [
        f"{outcome} · <@{job.user_id}> in <#{job.channel_id}>",
        request.model.display_name,
        quoted,
    ]
    if job.message_id is not None:
        parts.append(f"[message]({message_link(job.guild_id, job.channel_id, job.message_id)})")
    return clip(" · ".join(parts), 2000)


def forget_audit_line(admin_id: int, member_id: int, forgotten: int) -> str:
    """`🧹 @admin deleted the job history of @member here (3 finished jobs)` (one line, pings no one)."""
    return (
        f"🧹 <@{admin_id}> deleted the job history of <@{member_id}> here "
        f"({plural(forgotten, 'finished job')}) with /imagine-admin forget"
    )


def _when(timestamp: float | None) -> str:
    return discord.utils.format_dt(datetime.fromtimestamp(timestamp, UTC), "f") if timestamp else "—"


def details_embed(job: JobRecord, request: ImagineRequest) -> discord.Embed:
    """Everything about one job, for the Details button (private); always within Discord's embed limits."""
    embed = discord.Embed(title=f"Job {job.id}")
    embed.add_field(name="Model", value=f"{request.model.display_name} (`{request.model.id}`)")
    embed.add_field(name="Ratio", value=request.ratio)
    embed.add_field(name="Resolution", value=request.resolution or "—")
    embed.add_field(name="Speed", value=request.speed or "—")
    embed.add_field(name="Watermark", value="yes" if request.watermark else "no")
    delivered = job.generated_images
    embed.add_field(name="Images", value=f"{delivered} of {job.n} delivered" if job.is_final else str(job.n))
    embed.add_field(name="Requested by", value=f"<@{job.user_id}>")
    embed.add_field(name="State", value=job.state.value)
    if request.reference_count:
        embed.add_field(name="References", value=_references(request), inline=False)
    timings = [
        f"Asked {_when(job.created_at)}",
        f"Sent {_when(job.submitted_at)}",
        f"Ended {_when(job.finished_at)}",
    ]
    if job.finished_at:
        timings.append(f"Took {duration_words(job.finished_at - job.created_at)}")
    embed.add_field(name="Timings", value="\n".join(timings), inline=False)
    embed.add_field(
        name="Task id", value=f"`{job.task_id}`" if job.task_id else "— (never sent)", inline=False
    )
    layers = layer_list([image.layer for image in job.delivered_images])
    if layers:
        embed.add_field(name="Layers", value=layers, inline=False)
    if job.error:
        embed.add_field(name="Error", value=clip(job.error, FIELD_LIMIT), inline=False)
    return _with_prompt(embed, request.prompt)


def _kept_for_history(job: JobRecord) -> bool:
    """A finished job whose images reached no one (a user install's token expired and the member's
    DMs were closed): /imagine-history is where they are."""
    images = job.delivered_images
    return job.state is JobState.DONE and bool(images) and all(i.message_id is None for i in images)


def _kept_images(job: JobRecord) -> str:
    """The links of a kept result while the image service keeps them (about a day)."""
    urls = job.result_urls or ()
    if not urls or (job.result_expires_at is not None and job.result_expires_at <= time.time()):
        return " · not delivered (your DMs were closed) and the links have expired — use Reroll"
    links = " ".join(f"[{number}]({url})" for number, url in enumerate(urls, start=1))
    until = (
        f", until {discord.utils.format_dt(datetime.fromtimestamp(job.result_expires_at, UTC), 'R')}"
        if job.result_expires_at is not None
        else ""
    )
    return f" · not delivered (your DMs were closed), here{until}: {links}"


def history_text(jobs: Sequence[JobRecord]) -> str:
    """A member's recent jobs, one line each, newest first (for /imagine-history)."""
    lines: list[str] = []
    for job in jobs:
        prompt = clip(" ".join(job.prompt.split()).replace("`", "'"), 40)
        if job.state is JobState.DONE:
            outcome = f"✅ {plural(job.generated_images, 'image')}"
        elif job.state is JobState.FAILED:
            outcome = "❌ failed"
        else:
            outcome = "⏳ running"
        when = discord.utils.format_dt(datetime.fromtimestamp(job.created_at, UTC), "R")
        line = f"**{job.id}** · {outcome} · “{prompt}” · {when}"
        if _kept_for_history(job):
            line += _kept_images(job)
        elif job.message_id is not None:
            line += f" · [open]({message_link(job.guild_id, job.channel_id, job.message_id)})"
        if sum(len(kept) + 1 for kept in lines) + len(line) > 2000:
            break  # whole lines only: a clipped link is worse than one line fewer
        lines.append(line)
    return "\n".join(lines)
