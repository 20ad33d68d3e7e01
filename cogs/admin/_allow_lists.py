"""Which models, resolutions and speeds members may use: `/imagine-admin model …`,
`/imagine-admin resolution …` and `/imagine-admin speed …`, allow lists of one shape (an empty
list means all).
"""

# No `from __future__ import annotations`: discord.py reads the parameter annotations of the
# commands below at definition time.
from collections.abc import Callable
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.catalog import SPEED_MODES, Catalog
from bot.guild_settings import GuildSettings
from bot.settings_text import model_names
from cogs.admin._group import AdminGroup, ChangeRefusedError
from cogs.admin._pairs import PairCommand, PairOption, add_pair

if TYPE_CHECKING:
    from cogs.admin._cog import AdminCog


def allow_list_group(
    cog: "AdminCog",
    *,
    field: str,
    noun: str,
    description: str,
    offered: tuple[str, ...],
    choices: list[app_commands.Choice[str]],
    label: Callable[[str], str],
    last_one: Callable[[str], str],
) -> AdminGroup:
    """`allow`, `disallow` and `all` for the allow list `field` of the `offered` values.

    The setting holds the allowed values in `offered` order, or nothing when all are allowed.
    `label` names a value in answers; `last_one` refuses to disallow the only value left.
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
            raise ChangeRefusedError(last_one(value))
        return s.replace(**{field: kept})

    add_pair(
        group,
        cog,
        PairOption(noun, str, choices),
        (field,),
        PairCommand(
            "allow", f"Allow a {noun}", f"The {noun}", allow, lambda v, _, __: f"{label(v)} is allowed."
        ),
        PairCommand(
            "disallow",
            f"Disallow a {noun}",
            f"The {noun}",
            disallow,
            lambda v, _, __: f"{label(v)} is not allowed any more.",
        ),
    )

    @group.command(name="all", description=f"Allow every {noun}")
    async def allow_all(interaction: discord.Interaction) -> None:
        await cog.change(
            interaction,
            lambda s: s.replace(**{field: ()}),
            lambda _, new: f"Every {noun} is allowed.\n" + cog.line(new, field),
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
        label=name,
        last_one=lambda model: (
            f"{name(model)} is the only allowed model. Allow another one first, or turn image "
            "generation off with `/imagine-admin disable`."
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
        label=lambda resolution: f"Resolution `{resolution}`",
        last_one=lambda resolution: (
            f"`{resolution}` is the only allowed resolution. Allow another one first."
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
        label=lambda speed: f"Speed `{speed}`",
        last_one=lambda speed: f"`{speed}` is the only allowed speed. Allow another one first.",
    )
