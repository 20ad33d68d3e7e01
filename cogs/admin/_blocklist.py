"""The prompt blocklist of a server: `/imagine-admin blocklist add|remove|except|unexcept|list`."""

# No `from __future__ import annotations`: discord.py reads the parameter annotations of the
# commands below at definition time.
import asyncio
import io
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands

from bot import i18n
from bot.blocklist import BlockEntry, Blocklist, BlocklistError, describe, validate_entry, validate_exception
from bot.guild_settings import GuildSettings
from bot.i18n import Readable, _, _n, join
from bot.text import MESSAGE_LIMIT, clip
from cogs.admin._group import AdminGroup, ChangeRefusedError
from cogs.replies import reply_privately, server_locale

if TYPE_CHECKING:
    from cogs.admin._cog import AdminCog


def blocklist_group(cog: "AdminCog") -> AdminGroup:
    """`/imagine-admin blocklist add|remove|except|unexcept|list`."""
    group = AdminGroup(cog, name="blocklist", description="Words and patterns prompts may not contain")

    @group.command(
        name="add", description="Refuse prompts containing a word or matching a regular expression"
    )
    @app_commands.describe(
        kind="word: whole words, look-alikes included (h4te = hate); regex: a Python regular expression",
        pattern="The word, phrase or regular expression",
    )
    async def add(
        interaction: discord.Interaction,
        kind: Literal["word", "regex"],
        pattern: app_commands.Range[str, 1, 200],
    ) -> None:
        try:
            entry = validate_entry(kind, pattern)
            await _compile_off_loop(
                cog, interaction, lambda s: ((*s.blocklist, entry), s.blocklist_exceptions)
            )
        except BlocklistError as exc:
            await reply_privately(interaction, not_added(exc), locale=server_locale(interaction))
            return

        def change(s: GuildSettings) -> GuildSettings:
            if entry in s.blocklist:
                raise ChangeRefusedError(_("`{entry}` is already on the blocklist.", entry=describe(entry)))
            try:
                Blocklist((*s.blocklist, entry))
            except BlocklistError as exc:
                raise ChangeRefusedError(not_added(exc)) from None
            return s.replace(blocklist=(*s.blocklist, entry))

        await cog.change(
            interaction,
            change,
            lambda _old, new: join(
                [
                    _("Added `{entry}`: prompts matching it are refused.", entry=describe(entry)),
                    cog.line(new, "blocklist"),
                ]
            ),
        )

    @group.command(name="remove", description="Take an entry off the blocklist")
    @app_commands.describe(pattern="The word or regular expression, exactly as listed")
    async def remove(interaction: discord.Interaction, pattern: str) -> None:
        def change(s: GuildSettings) -> GuildSettings:
            found = _find_entry(s, pattern)
            if found is None:
                raise ChangeRefusedError(
                    _("That is not on the blocklist. See `/imagine-admin blocklist list` for the entries.")
                )
            return s.replace(blocklist=tuple(e for e in s.blocklist if e != found))

        def answer(old: GuildSettings, new: GuildSettings) -> Readable:
            gone = next(e for e in old.blocklist if e not in new.blocklist)
            return join([_("Removed `{entry}`.", entry=describe(gone)), cog.line(new, "blocklist")])

        await cog.change(interaction, change, answer)

    @remove.autocomplete("pattern")
    async def remove_choices(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        # Autocomplete skips interaction checks: only admins may see the entries.
        if interaction.guild_id is None or not await cog.is_admin(interaction):
            return []
        settings = await cog.bot.guild_settings.get(interaction.guild_id)
        typed = current.casefold()
        return [
            app_commands.Choice(name=clip(describe(e), 100), value=e.pattern[:100])
            for e in settings.blocklist
            if typed in e.pattern.casefold()
        ][:25]

    @group.command(name="except", description="Never treat a phrase as a match (an everyday word, say)")
    @app_commands.describe(phrase="Text that is never refused, e.g. a word of your language: j'ai hâte")
    async def except_phrase(
        interaction: discord.Interaction, phrase: app_commands.Range[str, 1, 200]
    ) -> None:
        try:
            phrase = validate_exception(phrase)
            await _compile_off_loop(
                cog, interaction, lambda s: (s.blocklist, (*s.blocklist_exceptions, phrase))
            )
        except BlocklistError as exc:
            await reply_privately(interaction, not_added(exc), locale=server_locale(interaction))
            return

        def change(s: GuildSettings) -> GuildSettings:
            if any(p.casefold() == phrase.casefold() for p in s.blocklist_exceptions):
                raise ChangeRefusedError(_("`{phrase}` is already an exception.", phrase=phrase))
            try:
                Blocklist(s.blocklist, (*s.blocklist_exceptions, phrase))
            except BlocklistError as exc:
                raise ChangeRefusedError(not_added(exc)) from None
            return s.replace(blocklist_exceptions=(*s.blocklist_exceptions, phrase))

        await cog.change(
            interaction,
            change,
            lambda _old, new: _(
                "Added the exception `{phrase}`: it is never treated as a blocklist match "
                "(it still has to be written as whole words). Exceptions: {count}.",
                phrase=phrase,
                count=len(new.blocklist_exceptions),
            ),
        )

    @group.command(name="unexcept", description="Take a phrase off the blocklist exceptions")
    @app_commands.describe(phrase="The exception, as listed")
    async def unexcept_phrase(interaction: discord.Interaction, phrase: str) -> None:
        wanted = " ".join(phrase.split()).casefold()

        def change(s: GuildSettings) -> GuildSettings:
            kept = tuple(p for p in s.blocklist_exceptions if p.casefold() != wanted)
            if kept == s.blocklist_exceptions:
                raise ChangeRefusedError(
                    _("That is not an exception. See `/imagine-admin blocklist list` for the exceptions.")
                )
            return s.replace(blocklist_exceptions=kept)

        def answer(old: GuildSettings, new: GuildSettings) -> Readable:
            gone = next(p for p in old.blocklist_exceptions if p not in new.blocklist_exceptions)
            return _(
                "Removed the exception `{phrase}`. Exceptions: {count}.",
                phrase=gone,
                count=len(new.blocklist_exceptions),
            )

        await cog.change(interaction, change, answer)

    @unexcept_phrase.autocomplete("phrase")
    async def unexcept_choices(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        # Autocomplete skips interaction checks: only admins may see the exceptions.
        if interaction.guild_id is None or not await cog.is_admin(interaction):
            return []
        settings = await cog.bot.guild_settings.get(interaction.guild_id)
        typed = current.casefold()
        return [
            app_commands.Choice(name=clip(p, 100), value=p[:100])
            for p in settings.blocklist_exceptions
            if typed in p.casefold()
        ][:25]

    @group.command(name="list", description="Show the blocklist and its exceptions")
    async def list_entries(interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None
        settings = await cog.bot.guild_settings.get(interaction.guild_id)
        locale = server_locale(interaction)
        if not settings.blocklist and not settings.blocklist_exceptions:
            await reply_privately(
                interaction,
                _("The blocklist is empty. Add entries with `/imagine-admin blocklist add`."),
                locale=locale,
            )
            return
        entries = [describe(e) for e in settings.blocklist]
        # The attached file is data (read back by admins and tools), so its lines stay as written.
        exceptions = [f"except: {p}" for p in settings.blocklist_exceptions]
        parts: list[Readable] = [
            _("**Prompt blocklist** ({count}):", count=len(entries)),
            *(f"• `{e}`" for e in entries),
        ]
        if exceptions:
            parts += [
                _("**Exceptions** ({count}):", count=len(exceptions)),
                *(f"• `{p}`" for p in settings.blocklist_exceptions),
            ]
        text = i18n.render(join(parts), locale)
        if len(text) <= MESSAGE_LIMIT:
            await reply_privately(interaction, text)
            return
        listing = io.BytesIO("\n".join(entries + exceptions).encode())
        await reply_privately(
            interaction,
            _n(
                "**Prompt blocklist**: {count} entry, attached.",
                "**Prompt blocklist**: {count} entries, attached.",
                len(entries),
            ),
            locale=locale,
            file=discord.File(listing, filename="blocklist.txt"),
        )

    return group


def not_added(refusal: BlocklistError) -> Readable:
    """Why an entry or exception was not added (the refusal names what to change)."""
    return _("Not added: {reason}", reason=refusal.text)


async def _compile_off_loop(
    cog: "AdminCog",
    interaction: discord.Interaction,
    lists: Callable[[GuildSettings], tuple[tuple[BlockEntry, ...], tuple[str, ...]]],
) -> None:
    """Build the blocklist a change would leave in a worker thread, raising `BlocklistError` if refused.

    Compiling a full list takes up to a few hundred ms; once done here, the check inside the
    settings transaction reuses the compiled patterns.
    """
    assert interaction.guild_id is not None
    entries, exceptions = lists(await cog.bot.guild_settings.get(interaction.guild_id))
    await asyncio.to_thread(Blocklist, entries, exceptions)


def _find_entry(settings: GuildSettings, pattern: str) -> BlockEntry | None:
    """The entry an admin means: its pattern (a word without surrounding spaces) or its `describe`
    form; else, as autocomplete cuts values to 100 characters, the only entry starting with it."""
    for entry in settings.blocklist:
        if pattern in (entry.pattern, describe(entry)) or (
            entry.kind == "word" and pattern.strip() == entry.pattern
        ):
            return entry
    if len(pattern) == 100:
        starts = [e for e in settings.blocklist if e.pattern.startswith(pattern)]
        if len(starts) == 1:
            return starts[0]
    return None
