"""Which models, resolutions and speeds members may use: `/imagine-admin model …`,
`/imagine-admin resolution …` and `/imagine-admin speed …`, allow lists of one shape (an empty
list means all).
"""

# No `from __future__ import annotations`: discord.py reads the parameter annotations of the
# commands below at definition time.
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.catalog import SPEED_MODES, Catalog
from bot.guild_settings import GuildSettings
from bot.i18n import Readable, Text, _, join
from bot.settings_text import model_names
from cogs.admin._group import AdminGroup, ChangeRefusedError
from cogs.admin._pairs import PairCommand, PairOption, add_pair

if TYPE_CHECKING:
    from cogs.admin._cog import AdminCog


@dataclass(frozen=True)
class AllowListTexts:
    """What one allow list answers: a value allowed or disallowed, every value allowed, and the
    refusal to disallow the last value left."""

    allowed: Callable[[str], Readable]
    disallowed: Callable[[str], Readable]
    every: Text
    last_one: Callable[[str], Readable]


def allow_list_group(
    cog: "AdminCog",
    *,
    field: str,
    noun: str,
    description: str,
    offered: tuple[str, ...],
    choices: list[app_commands.Choice[str]],
    said: AllowListTexts,
) -> AdminGroup:
    """`allow`, `disallow` and `all` for the allow list `field` of the `offered` values.

    The setting holds the allowed values in `offered` order, or nothing when all are allowed.
    `said` holds the answers, each a whole sentence of its own for translators.
    """
    group = AdminGroup(cog, name=noun, description=description)

    def allowed(s: GuildSettings) -> tuple[str, ...]:
        return getattr(s, field) or offered

    def allow(s: GuildSettings, value: str) -> GuildSettings:
        wanted = set(allowed(s)) | {value}
        kept = tuple(v for v in offered if v in wanted)
        return s.replace(**{field: () if kept == offered else kept})

    def disallow(s: GuildSettings, value: str) -> GuildSettings:
        kept = tuple(v for v in allowed(s) if v != value)
        if not kept:
            raise ChangeRefusedError(said.last_one(value))
        return s.replace(**{field: kept})

    add_pair(
        group,
        cog,
        PairOption(noun, str, choices),
        (field,),
        PairCommand("allow", f"Allow a {noun}", f"The {noun}", allow, lambda v, _old, _new: said.allowed(v)),
        PairCommand(
            "disallow",
            f"Disallow a {noun}",
            f"The {noun}",
            disallow,
            lambda v, _old, _new: said.disallowed(v),
        ),
    )

    @group.command(name="all", description=f"Allow every {noun}")
    async def allow_all(interaction: discord.Interaction) -> None:
        await cog.change(
            interaction,
            lambda s: s.replace(**{field: ()}),
            lambda _old, new: join([said.every, cog.line(new, field)]),
        )

    return group


def model_group(cog: "AdminCog", catalog: Catalog) -> AdminGroup:
    """`/imagine-admin model allow|disallow|all`."""

    def name(model_id: str) -> str:
        return model_names([model_id], catalog)[0]

    return allow_list_group(
        cog,
        field="allowed_models",
        noun="model",
        description="Which models members may use",
        offered=catalog.ids,
        choices=[app_commands.Choice(name=m.display_name, value=m.id) for m in catalog],
        said=AllowListTexts(
            allowed=lambda model: _("{model} is allowed.", model=name(model)),
            disallowed=lambda model: _("{model} is not allowed any more.", model=name(model)),
            every=_("Every model is allowed."),
            last_one=lambda model: _(
                "{model} is the only allowed model. Allow another one first, or turn image "
                "generation off with `/imagine-admin disable`.",
                model=name(model),
            ),
        ),
    )


def resolution_group(cog: "AdminCog", catalog: Catalog) -> AdminGroup:
    """`/imagine-admin resolution allow|disallow|all`."""
    offered = catalog.all_resolutions()
    return allow_list_group(
        cog,
        field="allowed_resolutions",
        noun="resolution",
        description="Which output resolutions members may use",
        offered=offered,
        choices=[app_commands.Choice(name=r, value=r) for r in offered],
        said=AllowListTexts(
            allowed=lambda resolution: _("Resolution `{resolution}` is allowed.", resolution=resolution),
            disallowed=lambda resolution: _(
                "Resolution `{resolution}` is not allowed any more.", resolution=resolution
            ),
            every=_("Every resolution is allowed."),
            last_one=lambda resolution: _(
                "`{resolution}` is the only allowed resolution. Allow another one first.",
                resolution=resolution,
            ),
        ),
    )


def speed_group(cog: "AdminCog") -> AdminGroup:
    """`/imagine-admin speed allow|disallow|all` (for models with prompt-optimisation modes)."""
    return allow_list_group(
        cog,
        field="allowed_speeds",
        noun="speed",
        description="Which speeds (standard, fast) members may use",
        offered=SPEED_MODES,
        choices=[app_commands.Choice(name=mode, value=mode) for mode in SPEED_MODES],
        said=AllowListTexts(
            allowed=lambda speed: _("Speed `{speed}` is allowed.", speed=speed),
            disallowed=lambda speed: _("Speed `{speed}` is not allowed any more.", speed=speed),
            every=_("Every speed is allowed."),
            last_one=lambda speed: _(
                "`{speed}` is the only allowed speed. Allow another one first.", speed=speed
            ),
        ),
    )
