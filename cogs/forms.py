"""The request form — "Imagine with these images" and Remix — and how its submissions come back.

A form must work whenever it is submitted: a minute later, an hour later, after a restart. So
the bot keeps no live `discord.ui.Modal` for it. The form's `custom_id` says what it is for
(`imagine:form:remix:<job id>`, `imagine:form:menu:<channel id>:<message id>`), its inputs have
fixed ids, and the form is stopped before it is sent, so discord.py never holds it: every
submission, fresh or not, reaches the bot's `on_interaction` listeners, each handling its own
kind of form (the message menu in `cogs.imagine`, Remix in `cogs.actions`). Each submission
has its own interaction token, so it can always be answered.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import discord

from bot import i18n
from bot.catalog import AUTO_RATIO, DOCUMENTED_RATIOS, MAX_TOTAL_IMAGES, Catalog
from bot.i18n import _, _n
from bot.jobs.request import DEFAULT_RATIO
from bot.jobs.runner import INTERNAL_ERROR
from bot.references import ReferenceSource
from bot.text import clip
from cogs.replies import reply_privately

log = logging.getLogger(__name__)

FORM_PREFIX = "imagine:form:"
MODAL_TITLE_LIMIT = 45  # Discord's limit on a modal's title, in characters
EXPIRED = _("This form expired — open it again.")

_REMIX = re.compile(r"imagine:form:remix:(?P<job_id>[0-9]{1,20})")
_MENU = re.compile(r"imagine:form:menu:(?P<channel_id>[0-9]{1,20}):(?P<message_id>[0-9]{1,20})")

# How long the images a menu form was opened with are kept for its submission: as long as
# Discord's signed links to them last. After that (or a restart) the message is read again.
MENU_MEMORY_SECONDS = 24 * 60 * 60
# Most menu forms remembered at once (the oldest are forgotten first and read again if submitted).
MENU_MEMORY_FORMS = 2_000


@dataclass(frozen=True)
class RemixForm:
    """The Remix form of one job."""

    job_id: int

    @property
    def custom_id(self) -> str:
        return f"{FORM_PREFIX}remix:{self.job_id}"


@dataclass(frozen=True)
class MenuForm:
    """The form "Imagine with these images" opens for one message."""

    channel_id: int
    message_id: int

    @property
    def custom_id(self) -> str:
        return f"{FORM_PREFIX}menu:{self.channel_id}:{self.message_id}"


@dataclass(frozen=True)
class ExpiredForm:
    """A request form this version of the bot cannot read (from an older layout, or damaged)."""


RequestFormKind = RemixForm | MenuForm | ExpiredForm


def _payload(interaction: discord.Interaction) -> Mapping[str, Any]:
    """The interaction's `data` as Discord sent it (empty when it has none)."""
    return interaction.data or {}


def submitted_form(interaction: discord.Interaction) -> RequestFormKind | None:
    """Which request form a modal submission answers; None if it is not a modal submit of one."""
    if interaction.type is not discord.InteractionType.modal_submit:
        return None
    custom_id = str(_payload(interaction).get("custom_id", ""))
    if not custom_id.startswith(FORM_PREFIX):
        return None
    if match := _REMIX.fullmatch(custom_id):
        return RemixForm(int(match["job_id"]))
    if match := _MENU.fullmatch(custom_id):
        return MenuForm(int(match["channel_id"]), int(match["message_id"]))
    return ExpiredForm()


@dataclass(frozen=True)
class FormAnswers:
    """What the member entered. A select left empty is None (the caller's default applies)."""

    prompt: str
    ratio: str | None
    n: int | None
    model: str | None


def form_answers(interaction: discord.Interaction) -> FormAnswers | None:
    """The answers of a submitted request form; None if the submission lacks the prompt."""
    found: dict[str, Any] = {}

    def walk(components: list[Mapping[str, Any]]) -> None:
        for component in components:
            if "components" in component:  # action row
                walk(component["components"])
            elif "component" in component:  # label
                walk([component["component"]])
            elif "custom_id" in component:
                found[component["custom_id"]] = component.get("value", component.get("values"))

    walk(list(_payload(interaction).get("components", [])))

    def chosen(key: str) -> str | None:
        values = found.get(key)
        return str(values[0]) if isinstance(values, list) and values else None

    prompt = found.get("prompt")
    if not isinstance(prompt, str):
        return None
    n = chosen("n")
    return FormAnswers(
        prompt=prompt,
        ratio=chosen("ratio"),
        n=int(n) if n is not None and n.isdigit() else None,
        model=chosen("model"),
    )


class RequestForm(discord.ui.Modal):
    """The form itself: prompt, ratio, number of images and model, pre-filled for Remix.

    Only the layout: it is stopped at once (see the module docstring), so `on_submit` never runs.
    Every text on it is read in `locale`, the language of the member who opens it.
    """

    def __init__(
        self,
        form: RemixForm | MenuForm,
        catalog: Catalog,
        *,
        title: i18n.Readable,
        locale: str | None,
        model: str,
        reference_count: int,
        prompt: str | None = None,
        ratio: str = DEFAULT_RATIO,
        n: int = 1,
    ) -> None:
        def read(text: i18n.Readable) -> str:
            return i18n.render(text, locale)

        super().__init__(title=clip(read(title), MODAL_TITLE_LIMIT), timeout=None, custom_id=form.custom_id)
        prompt_input: discord.ui.TextInput[RequestForm] = discord.ui.TextInput(
            custom_id="prompt",
            style=discord.TextStyle.paragraph,
            max_length=min(4000, max(m.max_prompt_length for m in catalog)),
            placeholder=read(_("What should the model make?")),
            default=prompt,
        )
        ratios = list(DOCUMENTED_RATIOS)
        if any(m.supports_auto for m in catalog):
            ratios.append(AUTO_RATIO)
        ratio_select: discord.ui.Select[RequestForm] = discord.ui.Select(
            custom_id="ratio",
            options=[discord.SelectOption(label=r, value=r, default=r == ratio) for r in ratios],
        )
        most = max(1, MAX_TOTAL_IMAGES - reference_count)
        n_select: discord.ui.Select[RequestForm] = discord.ui.Select(
            custom_id="n",
            options=[
                discord.SelectOption(label=str(i), value=str(i), default=i == min(n, most))
                for i in range(1, most + 1)
            ],
        )
        model_select: discord.ui.Select[RequestForm] = discord.ui.Select(
            custom_id="model",
            options=[
                discord.SelectOption(label=m.display_name, value=m.id, default=m.id == model) for m in catalog
            ],
        )
        limit_note = (
            read(
                _n(
                    "With {count} reference image, at most {most}.",
                    "With {count} reference images, at most {most}.",
                    reference_count,
                    most=most,
                )
            )
            if reference_count
            else None
        )
        # Translators: the label of the form's prompt field (the text the model draws from).
        self.add_item(discord.ui.Label(text=read(_("Prompt")), component=prompt_input))
        # Translators: the label of the form's aspect-ratio field (1:1, 16:9…).
        self.add_item(discord.ui.Label(text=read(_("Ratio")), component=ratio_select))
        self.add_item(
            discord.ui.Label(text=read(_("Number of images")), description=limit_note, component=n_select)
        )
        # Translators: the label of the form's field choosing which image model draws.
        self.add_item(discord.ui.Label(text=read(_("Model")), component=model_select))
        # A stopped modal is never stored by discord.py, so no submission is handled twice.
        self.stop()


async def answer_expired(interaction: discord.Interaction) -> None:
    """A form the bot can no longer use: say so privately instead of leaving it unanswered."""
    log.info(
        "an unreadable request form was submitted (guild %s, user %s)",
        interaction.guild_id,
        interaction.user.id,
    )
    await reply_privately(interaction, EXPIRED)


async def answer_form(
    interaction: discord.Interaction,
    form: RemixForm | MenuForm,
    handle: Callable[[FormAnswers], Awaitable[object]],
) -> None:
    """Run `handle` on a submission's answers; unreadable answers or a crash get a private answer."""
    answers = form_answers(interaction)
    if answers is None:
        await answer_expired(interaction)
        return
    try:
        await handle(answers)
    except Exception:
        log.exception(
            "the request form %s failed (guild %s, user %s)",
            type(form).__name__,
            interaction.guild_id,
            interaction.user.id,
        )
        await reply_privately(interaction, INTERNAL_ERROR)


class OpenMenuForms:
    """The images each menu form was opened with, by form.

    The menu's own interaction shows the bot the message's images even where Discord hides a
    member's message from the bot's reads (without the Message Content intent), so they are
    kept for the form's submission rather than read again.
    """

    def __init__(
        self,
        *,
        lifetime: float = MENU_MEMORY_SECONDS,
        capacity: int = MENU_MEMORY_FORMS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lifetime = lifetime
        self.capacity = capacity
        self.clock = clock  # public so that tests can let time pass
        self._images: dict[MenuForm, tuple[float, tuple[ReferenceSource, ...]]] = {}

    def remember(self, form: MenuForm, images: tuple[ReferenceSource, ...]) -> None:
        """Keep `images` for `form` (replacing what it had), forgetting the oldest beyond capacity."""
        self._images.pop(form, None)
        self._images[form] = (self.clock(), images)
        while len(self._images) > self.capacity:
            del self._images[next(iter(self._images))]

    def recall(self, form: MenuForm) -> tuple[ReferenceSource, ...] | None:
        """The images `form` was opened with, unless forgotten or older than the lifetime."""
        kept = self._images.get(form)
        if kept is None:
            return None
        if self.clock() - kept[0] > self.lifetime:
            del self._images[form]
            return None
        return kept[1]
