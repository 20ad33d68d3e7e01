"""One builder for the add/remove pairs of /imagine-admin: ban/unban, channel allow/deny, role
allow/disallow and admin/unadmin, model and resolution allow/disallow.

Each pair is two commands taking one option of the same type, each changing the settings one
way and answering with what happened followed by the setting lines it touched.
"""

# No `from __future__ import annotations`: the callbacks built below are annotated with the
# option's type at definition time, which is how discord.py learns the option's type.
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import discord
from discord import app_commands

from bot.guild_settings import GuildSettings
from bot.i18n import Readable, join
from cogs.admin._group import AdminGroup
from cogs.replies import reply_privately

if TYPE_CHECKING:
    from cogs.admin._cog import AdminCog

Value = TypeVar("Value")
Callback = TypeVar("Callback")


@dataclass(frozen=True)
class PairCommand(Generic[Value]):
    """One side of a pair: its name, its and its option's description, the change it makes, and the
    first line of its answer."""

    name: str
    description: str
    option_description: str
    change: Callable[[GuildSettings, Value], GuildSettings]  # may raise ChangeRefusedError
    said: Callable[[Value, GuildSettings, GuildSettings], Readable]  # (value, old, new) -> what happened


@dataclass(frozen=True)
class PairOption:
    """The one option both commands of a pair take."""

    name: str
    type: Any  # an annotation discord.py understands: discord.User, discord.Role, a Transform, str
    choices: Sequence[app_commands.Choice[str]] = ()


def add_pair(
    group: AdminGroup,
    cog: "AdminCog",
    option: PairOption,
    lines: tuple[str, ...],
    add: PairCommand[Any],
    remove: PairCommand[Any],
    *,
    refusal: Callable[["AdminCog", discord.Interaction], Readable | None] | None = None,
) -> None:
    """Add `add` then `remove` to `group`; each answers with its line and then the setting `lines`.

    `refusal`, when given, is asked first: a text it returns is answered instead of changing anything.
    """
    for side in (add, remove):
        _add_command(group, cog, option, lines, side, refusal)


def _add_command(
    group: AdminGroup,
    cog: "AdminCog",
    option: PairOption,
    lines: tuple[str, ...],
    side: PairCommand[Any],
    refusal: Callable[["AdminCog", discord.Interaction], Readable | None] | None,
) -> None:
    option_type = option.type
    # Typed loosely: discord.py's decorators are typed for callbacks whose option types are known statically.
    with_choices: Callable[[Any], Any] = (
        app_commands.choices(value=list(option.choices)) if option.choices else _unchanged
    )

    # The Python parameter is `value` whatever the option is called; Discord sees `option.name`.
    # discord.py learns the option's type from the annotation, evaluated when this runs.
    @group.command(name=side.name, description=side.description)
    @app_commands.rename(value=option.name)
    @app_commands.describe(value=side.option_description)
    @with_choices
    async def callback(interaction: discord.Interaction, value: option_type) -> None:  # type: ignore[valid-type]
        if refusal is not None and (refused := refusal(cog, interaction)) is not None:
            # A permission refusal, like the tree's: in the member's own language.
            await reply_privately(interaction, refused)
            return
        await cog.change(
            interaction,
            lambda s: side.change(s, value),
            lambda old, new: join([side.said(value, old, new), *(cog.line(new, key) for key in lines)]),
        )


def _unchanged(callback: Callback) -> Callback:
    return callback


def with_value(values: tuple[Any, ...], value: object) -> tuple[Any, ...]:
    """`values` with `value` appended, unless it is already there."""
    return values if value in values else (*values, value)


def without_value(values: tuple[Any, ...], value: object) -> tuple[Any, ...]:
    """`values` without `value`."""
    return tuple(v for v in values if v != value)
