"""/imagine-admin: a server's own rules for /imagine; /imagine-quota: what a member has left.

Thin adapter: settings live in `bot.guild_settings`, the rules are applied by `bot.policy` (the
one place deciding whether a member may run a job), texts come from `bot.settings_text` and
`bot.usage`.

Who may use /imagine-admin is enforced in code, for every subcommand (`AdminGroup`): members with
Manage Server (or Administrator), members with one of the server's admin roles, and the bot's
owners (OWNER_IDS). `default_permissions(manage_guild=True)` only hides the commands from
others by default, and a server can change that in its Integrations settings. Changing the
admin roles themselves needs Manage Server, so a delegated admin cannot hand out admin.

The package, by subject:

- `_cog`: `AdminCog` (who may, applying a change, /imagine-quota) and the assembled group;
- `_group`: the checked group class, the refusals, the shape of a change;
- `_pairs`: the one builder of add/remove command pairs;
- `_settings`: show, reset, enable, disable, limits, quota, audit;
- `_channels_and_roles`: ban/unban, allowed and denied channels, allowed and admin roles, role quotas;
- `_allow_lists`: allowed models and resolutions;
- `_blocklist`: the prompt blocklist and its exceptions;
- `_spoiler`: every result in the server posted as a spoiler;
- `_usage`: the usage report and its CSV;
- `_forget`: deleting a member's job history in the server (`bot.retention`).
"""

from typing import TYPE_CHECKING

from cogs.admin._cog import GROUP_NAME, QUOTA_COMMAND, AdminCog
from cogs.admin._group import GUILD_ONLY, NOT_ADMIN, NOT_MANAGER, ChangeRefusedError, NotAllowedError

if TYPE_CHECKING:
    from cogs.app import ImagineBot

__all__ = [
    "GROUP_NAME",
    "GUILD_ONLY",
    "NOT_ADMIN",
    "NOT_MANAGER",
    "QUOTA_COMMAND",
    "AdminCog",
    "ChangeRefusedError",
    "NotAllowedError",
    "setup",
]


async def setup(bot: "ImagineBot") -> None:
    """Load the admin commands (`bot.load_extension("cogs.admin")`)."""
    await bot.add_cog(AdminCog(bot))
