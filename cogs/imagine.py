"""The /imagine command and the message menu "Imagine with these images": what the member
asked for, handed to the job launcher (`cogs.launcher`), which checks, answers and runs it."""

# No `from __future__ import annotations`: discord.py reads the /imagine parameter annotations at
# definition time, and the prompt length range is computed from the catalog in a closure.
import asyncio
import functools
import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.catalog import AUTO_RATIO, DOCUMENTED_RATIOS, MAX_TOTAL_IMAGES, SPEED_MODES, Catalog
from bot.i18n import _, _p
from bot.jobs.request import DEFAULT_RATIO, RequestOptions
from bot.preferences import NO_PREFERENCES, fill
from bot.references import MAX_REFERENCES, ReferenceRejectedError, ReferenceSource, check_sources
from cogs.components import source_from_attachment
from cogs.forms import (
    ExpiredForm,
    FormAnswers,
    MenuForm,
    OpenMenuForms,
    RequestForm,
    answer_expired,
    answer_form,
    submitted_form,
)
from cogs.installs import conversation, server_installed, usable_anywhere
from cogs.launcher import RESTARTING
from cogs.replies import member_locale, reply_privately

if TYPE_CHECKING:
    from cogs.app import ImagineBot

log = logging.getLogger(__name__)

MENU_NAME = "Imagine with these images"
# The menu's name as the member's Discord shows it (the same message as the command's translation).
MENU_TITLE = _p("menu name", "Imagine with these images")
# Most seconds the menu form waits for the member's defaults before opening with the bot's.
FORM_DEFAULTS_TIMEOUT = 1.0
MENU_MESSAGE_GONE = _(
    "The message with those images was deleted, so this form can't be used any more. "
    "Use “{menu}” on another message.",
    menu=MENU_TITLE,
)
# Also what a member sees where Discord hides a member's message from the bot's own reads.
MENU_IMAGES_GONE = _(
    "This form expired — open it again. I can't read that message's images any more: right-click the "
    "message → Apps → “{menu}” for a new form.",
    menu=MENU_TITLE,
)
NO_IMAGES = _("That message has no images. Use this on a message with image attachments.")


def build_imagine_command(catalog: Catalog, bot: "ImagineBot") -> app_commands.Command:
    """The command's choices come from the model catalog, so they are built at load time."""
    longest_prompt = max(m.max_prompt_length for m in catalog)

    @app_commands.command(name="imagine", description="Generate images from a text prompt")
    @app_commands.describe(
        prompt="What to draw",
        ratio="Aspect ratio (default 1:1 or your /imagine-settings; auto matches your reference image)",
        n=f"How many images, 1 to {MAX_TOTAL_IMAGES} (default 1 or your /imagine-settings)",
        model="Which model draws it (default: your /imagine-settings, else the bot's)",
        resolution="Output resolution, for models that offer one",
        speed="standard (default, best quality) or fast (quicker), for models that offer it",
        image1="A reference image to work from (optional)",
        image2="Another reference image (optional)",
        image3="Another reference image (optional)",
        image4="Another reference image (optional)",
        layers="Also get the image as transparent layers (Seedream 5.0 Pro)",
    )
    @app_commands.choices(
        ratio=[app_commands.Choice(name=r, value=r) for r in (*DOCUMENTED_RATIOS, AUTO_RATIO)],
        model=[app_commands.Choice(name=m.display_name, value=m.id) for m in catalog],
        speed=[app_commands.Choice(name=mode, value=mode) for mode in SPEED_MODES],
    )
    async def imagine(
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, longest_prompt],
        # None: the member left it out, so their /imagine-settings (or the bot's default) decides.
        ratio: str | None = None,
        n: app_commands.Range[int, 1, MAX_TOTAL_IMAGES] | None = None,
        model: str | None = None,
        resolution: str | None = None,
        speed: str | None = None,
        image1: discord.Attachment | None = None,
        image2: discord.Attachment | None = None,
        image3: discord.Attachment | None = None,
        image4: discord.Attachment | None = None,
        layers: bool = False,
    ) -> None:
        attachments = [a for a in (image1, image2, image3, image4) if a is not None]
        options = RequestOptions(
            prompt=prompt,
            model_id=model,
            ratio=ratio,
            n=n,
            resolution=resolution,
            speed=speed,
            references=tuple(source_from_attachment(a) for a in attachments),
            layers=layers,
        )
        await bot.launcher.launch(interaction, options)

    resolutions = catalog.all_resolutions()
    if resolutions:
        app_commands.choices(resolution=[app_commands.Choice(name=r, value=r) for r in resolutions])(imagine)
    return imagine


def images_in_message(message: discord.Message) -> list[ReferenceSource]:
    """Images a message carries: image attachments, then embed images through Discord's media proxy.

    Embed images are only taken through `proxy_url` (Discord's own proxy), never the original
    third-party address, so the bot fetches nothing but what Discord serves.
    """
    found = [
        source_from_attachment(a)
        for a in message.attachments
        # Discord gives videos a width too: trust the content type when there is one.
        if (a.content_type or "").startswith("image/") or (a.content_type is None and a.width is not None)
    ]
    for index, embed in enumerate(message.embeds, start=1):
        for media in (embed.image, embed.thumbnail):
            if media.proxy_url:
                name = media.proxy_url.rsplit("/", 1)[-1].split("?", 1)[0] or f"embed-{index}.png"
                found.append(
                    ReferenceSource(
                        filename=name,
                        url=media.proxy_url,
                        content_type=None,
                        size=None,
                        width=media.width,
                        height=media.height,
                    )
                )
                break
    return found


class ImagineCog(commands.Cog):
    """Thin adapter from /imagine and the message menu to the job launcher."""

    def __init__(self, bot: "ImagineBot") -> None:
        self.bot = bot
        self.command = usable_anywhere(build_imagine_command(bot.catalog, bot))
        self.menu = usable_anywhere(
            app_commands.ContextMenu(name=MENU_NAME, callback=self.imagine_from_message)
        )
        self.open_menu_forms = OpenMenuForms()

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.command)
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.command.name)
        self.bot.tree.remove_command(self.menu.name, type=discord.AppCommandType.message)

    async def imagine_from_message(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """Right-click a message → Apps → "Imagine with these images": ask for a prompt in a modal."""
        if self.bot.stopping:
            await reply_privately(interaction, RESTARTING)
            return
        sources = images_in_message(message)
        if not sources:
            await reply_privately(interaction, NO_IMAGES)
            return
        references = tuple(sources[:MAX_REFERENCES])
        try:
            # Only what Discord told us about the files: a bad one is refused before any typing.
            check_sources(references, n=1, max_references=MAX_REFERENCES, model_name="The bot")
        except ReferenceRejectedError as exc:
            await reply_privately(interaction, exc.text)
            return
        form = MenuForm(message.channel.id, message.id)
        self.open_menu_forms.remember(form, references)
        defaults = await self._form_defaults(interaction, references)
        await interaction.response.send_modal(
            RequestForm(
                form,
                self.bot.catalog,
                title=MENU_TITLE,
                locale=member_locale(interaction),
                model=defaults.model_id or self.bot.settings.default_model,
                reference_count=len(references),
                ratio=defaults.ratio or DEFAULT_RATIO,
                n=defaults.n or 1,
            )
        )

    async def _form_defaults(
        self, interaction: discord.Interaction, references: tuple[ReferenceSource, ...]
    ) -> RequestOptions:
        """What the menu form starts with: the member's /imagine-settings, where this server allows them
        (the form shows what will be used; a default it skips is simply not pre-selected)."""
        try:
            # The form must be the first answer, within Discord's 3 s: a slow read is not waited for.
            async with asyncio.timeout(FORM_DEFAULTS_TIMEOUT):
                prefs = await self.bot.preferences.get(interaction.user.id)
                # A server that never installed the bot has no settings: none are read for it.
                settings = (
                    await self.bot.guild_settings.get(interaction.guild_id)
                    if interaction.guild_id is not None and server_installed(interaction)
                    else None
                )
        except Exception as exc:
            log.warning(
                "user %s: preferences could not be read for a form: %s",
                interaction.user.id,
                type(exc).__name__,
            )
            prefs, settings = NO_PREFERENCES, None
        asked = RequestOptions(prompt="", references=references)
        return fill(
            asked, prefs, self.bot.catalog, default_model=self.bot.settings.default_model, settings=settings
        ).options

    @commands.Cog.listener("on_interaction")
    async def on_menu_form(self, interaction: discord.Interaction) -> None:
        """A submitted "Imagine with these images" form (also one opened before a restart)."""
        form = submitted_form(interaction)
        if isinstance(form, ExpiredForm):
            await answer_expired(interaction)
        elif isinstance(form, MenuForm):
            await answer_form(
                interaction, form, functools.partial(self._menu_form_submitted, interaction, form)
            )

    async def _menu_form_submitted(
        self, interaction: discord.Interaction, form: MenuForm, answers: FormAnswers
    ) -> None:
        references = self.open_menu_forms.recall(form)
        if references is None:
            references = await self._reread_menu_images(interaction, form)
            if references is None:
                return
        options = RequestOptions(
            prompt=answers.prompt,
            model_id=answers.model,
            # Left empty: the member's /imagine-settings, else the bot's defaults (see the launcher).
            ratio=answers.ratio,
            n=answers.n,
            references=references,
        )
        await self.bot.launcher.launch(interaction, options)

    async def _reread_menu_images(
        self, interaction: discord.Interaction, form: MenuForm
    ) -> tuple[ReferenceSource, ...] | None:
        """The images of a menu form's message, read again (after a restart); None once the member
        was told privately why they cannot be had."""
        if not conversation(interaction).bot_in_channel:
            # Where the bot is not a member it cannot read messages back: only the open form had them.
            await reply_privately(interaction, MENU_IMAGES_GONE)
            return None
        channel = self.bot.get_partial_messageable(form.channel_id, guild_id=interaction.guild_id)
        try:
            message = await channel.fetch_message(form.message_id)
        except discord.NotFound:
            await reply_privately(interaction, MENU_MESSAGE_GONE)
            return None
        except discord.HTTPException as exc:
            log.info(
                "menu form for message %s (guild %s, user %s): the message could not be read: %s",
                form.message_id,
                interaction.guild_id,
                interaction.user.id,
                exc.status,
            )
            await reply_privately(interaction, MENU_IMAGES_GONE)
            return None
        sources = images_in_message(message)
        if not sources:
            await reply_privately(interaction, MENU_IMAGES_GONE)
            return None
        return tuple(sources[:MAX_REFERENCES])


async def setup(bot: "ImagineBot") -> None:
    await bot.add_cog(ImagineCog(bot))
