"""/imagine-settings and spoilers end to end: the real bot, driven through the fake Discord gateway,
with the fake ToAPIs behind it.

A member's defaults are set with the command, read back after a restart, and seen where they
matter: in what reaches the image service, in the private note when a server's rules skip one,
and in the names of the posted attachments when the images are spoilers.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from cogs.launcher import PREFERENCES_UNREADABLE
from tests.cogs import test_admin_e2e as admin_e2e
from tests.cogs.test_admin_e2e import GUILD, MEMBER, NOT_ADMIN, Server, private_answer
from tests.fakes.discord import InteractionRecord
from tests.rig import eventually, status_of

pytestmark = pytest.mark.asyncio

# The server is announced to the bot, as in the /imagine-admin tests (members' roles resolve).
discord_fake = admin_e2e.discord_fake


@pytest.fixture
async def server(start_bot) -> Server:
    rig = await start_bot()
    await eventually(lambda: rig.bot.get_guild(GUILD), what="the server is known to the bot")
    return Server(rig)


async def settings(
    server: Server, options: dict[str, Any] | None = None, *, user_id: int | None = None
) -> str:
    """`/imagine-settings` with these options; its private answer."""
    return await private_answer(server.fake, await server.send("imagine-settings", options, user_id=user_id))


async def finished(server: Server, record: InteractionRecord) -> Any:
    """The job's message once it shows its final state (the job was accepted with a public placeholder)."""
    await server.accepted(record)

    def final(_: Any) -> Any:
        message = record.original
        return message if message is not None and status_of(message).startswith(("✅", "❌")) else None

    return await server.fake.wait_for(final, timeout=20)


async def note_of(server: Server, record: InteractionRecord) -> str:
    """The private follow-up the member got with their placeholder."""
    message = await server.fake.wait_for(lambda _: record.followups[0] if record.followups else None)
    assert (message.ephemeral, message.pings) == (True, set())
    return message.content


async def test_preferences_fill_what_the_member_left_out(server):
    member = server.new_member()
    answer = await settings(
        server, {"model": "doubao-seedream-5-0", "ratio": "16:9", "resolution": "3K", "n": 2}, user_id=member
    )
    await finished(server, await server.imagine("a lighthouse", user_id=member))
    sent = server.rig.toapis.submissions[-1]
    assert (
        answer.splitlines()[0],
        sent["model"],
        sent["size"],
        sent["n"],
        sent["metadata"]["resolution"],
    ) == (
        "Saved.",
        "doubao-seedream-5-0",
        "16:9",
        2,
        "3K",
    )


async def test_an_option_the_member_gives_wins_over_their_default(server):
    member = server.new_member()
    await settings(server, {"ratio": "16:9", "n": 3}, user_id=member)
    await finished(server, await server.imagine("a lighthouse", user_id=member, ratio="1:1", n=1))
    sent = server.rig.toapis.submissions[-1]
    assert (sent["size"], sent["n"]) == ("1:1", 1)


async def test_another_members_defaults_do_not_apply(server):
    member = server.new_member()
    await settings(server, {"n": 3}, user_id=member)
    await finished(server, await server.imagine("a lighthouse", user_id=server.new_member()))
    assert server.rig.toapis.submissions[-1]["n"] == 1


async def test_preferences_survive_a_restart(server, start_bot):
    member = server.new_member()
    await settings(server, {"model": "doubao-seedream-4-5", "spoiler": True}, user_id=member)
    await server.rig.bot.close()
    rig = await start_bot()
    await eventually(lambda: rig.bot.get_guild(GUILD), what="the server is known to the bot")
    again = Server(rig)
    shown = await settings(again, user_id=member)
    await finished(again, await again.imagine("a lighthouse", user_id=member))
    assert (
        "**Model:** Seedream 4.5" in shown,
        "**Spoiler my images:** on" in shown,
        rig.toapis.submissions[-1]["model"],
    ) == (True, True, "doubao-seedream-4-5")


async def test_reset_brings_back_the_bots_defaults(server):
    member = server.new_member()
    await settings(server, {"ratio": "16:9", "n": 3, "spoiler": True}, user_id=member)
    answer = await settings(server, {"reset": "everything"}, user_id=member)
    message = await finished(server, await server.imagine("a lighthouse", user_id=member))
    sent = server.rig.toapis.submissions[-1]
    assert (
        "**Ratio:** the bot default (1:1)" in answer,
        sent["size"],
        sent["n"],
        [a.filename.startswith("SPOILER_") for a in message.attachments],
    ) == (True, "1:1", 1, [False])


async def test_reset_of_one_default_keeps_the_others(server):
    member = server.new_member()
    await settings(server, {"ratio": "16:9", "n": 3}, user_id=member)
    await settings(server, {"reset": "n"}, user_id=member)
    await finished(server, await server.imagine("a lighthouse", user_id=member))
    sent = server.rig.toapis.submissions[-1]
    assert (sent["size"], sent["n"]) == ("16:9", 1)


async def test_a_default_the_server_forbids_is_skipped_with_a_private_note(server):
    member = server.new_member()
    await server.admin("model disallow", {"model": "doubao-seedream-4-5"})
    await server.admin("limits", {"max_n": 2})
    await settings(server, {"model": "doubao-seedream-4-5", "n": 4}, user_id=member)
    record = await server.imagine("a lighthouse", user_id=member)
    note = await note_of(server, record)
    await finished(server, record)
    sent = server.rig.toapis.submissions[-1]
    assert (sent["model"], sent["n"]) == ("doubao-seedream-5-0", 1)  # the bot's default model
    assert "model Seedream 4.5 (this server allows only `doubao-seedream-4-0`, " in note
    assert "4 images (this server allows at most 2 images per request)" in note


async def test_an_explicit_option_the_server_forbids_is_still_refused(server):
    member = server.new_member()
    await server.admin("model disallow", {"model": "doubao-seedream-5-0"})
    await settings(server, {"model": "doubao-seedream-4-0"}, user_id=member)
    text = await server.refused(
        await server.imagine("a lighthouse", user_id=member, model="doubao-seedream-5-0")
    )
    assert text.startswith("This server does not allow Seedream 5.0.")


async def test_no_note_when_every_default_applies(server):
    member = server.new_member()
    await settings(server, {"n": 2}, user_id=member)
    record = await server.imagine("a lighthouse", user_id=member)
    await finished(server, record)
    assert record.followups == []


async def test_a_value_the_model_lacks_is_refused_and_nothing_is_stored(server):
    member = server.new_member()
    await settings(server, {"model": "doubao-seedream-5-0"}, user_id=member)
    refused = await settings(server, {"resolution": "4K"}, user_id=member)
    shown = await settings(server, user_id=member)
    assert refused == (
        "Seedream 5.0 does not offer resolution `4K`. Choose one of: `2K`, `3K`, or first set a `model` "
        "that has it. Nothing was changed."
    )
    assert "**Resolution:** the model's default" in shown


async def test_too_many_images_for_the_model_is_refused(server):
    member = server.new_member()
    refused = await settings(server, {"model": "doubao-seedream-5-0-pro", "n": 12}, user_id=member)
    assert (
        refused == "Seedream 5.0 Pro makes 1 to 10 images per request. Choose 1 to 10. Nothing was changed."
    )


async def test_choosing_a_model_clears_a_default_it_cannot_take(server):
    member = server.new_member()
    await settings(
        server, {"model": "doubao-seedream-4-0", "resolution": "1K", "speed": "fast"}, user_id=member
    )
    answer = await settings(server, {"model": "doubao-seedream-5-0"}, user_id=member)
    assert (
        "Your default resolution `1K` was cleared: Seedream 5.0 does not offer resolution `1K`." in answer,
        "Your default speed `fast` was cleared: Seedream 5.0 has no speed option." in answer,
        "**Model:** Seedream 5.0" in answer,
    ) == (True, True, True)


async def test_a_member_who_wants_spoilers_gets_spoiler_attachments(server):
    member = server.new_member()
    await settings(server, {"spoiler": True}, user_id=member)
    mine = await finished(server, await server.imagine("a lighthouse", user_id=member, n=2))
    theirs = await finished(server, await server.imagine("a lighthouse", user_id=server.new_member()))
    assert [a.filename.startswith("SPOILER_") for a in mine.attachments] == [True, True]
    assert [a.filename.startswith("SPOILER_") for a in theirs.attachments] == [False]
    assert not mine.embeds[0].get("image") and not mine.embeds[0].get("thumbnail")


async def test_the_server_spoiler_setting_spoilers_every_result(server):
    answer = await server.admin("spoiler", {"setting": "on"})
    shown = await server.show()
    message = await finished(server, await server.imagine("a lighthouse", user_id=server.new_member()))
    await server.admin("spoiler", {"setting": "off"})
    after = await finished(server, await server.imagine("a lighthouse", user_id=server.new_member()))
    assert (
        answer.splitlines()[-1],
        "**Every result a spoiler:** on" in shown,
        [a.filename.startswith("SPOILER_") for a in message.attachments],
        [a.filename.startswith("SPOILER_") for a in after.attachments],
    ) == ("**Every result a spoiler:** on", True, [True], [False])


async def test_only_admins_may_set_the_server_spoiler(server):
    refused = await server.admin("spoiler", {"setting": "on"}, permissions=MEMBER)
    assert (refused, (await server.stored()).spoiler) == (str(NOT_ADMIN), False)


async def test_a_reroll_of_a_spoilered_result_is_a_spoiler_too(server):
    member = server.new_member()
    await settings(server, {"spoiler": True}, user_id=member)
    message = await finished(server, await server.imagine("a lighthouse", user_id=member))
    reroll = await server.fake.send_interaction(
        server.fake.component_interaction(message, _button(message, "reroll"), user_id=server.new_member())
    )
    again = await finished(server, reroll)
    assert [a.filename.startswith("SPOILER_") for a in again.attachments] == [True]


def _button(message: Any, action: str) -> str:
    ids = [
        c["custom_id"] for row in message.components for c in row.get("components", []) if "custom_id" in c
    ]
    return next(i for i in ids if i.startswith(f"imagine:{action}:"))


async def test_the_menu_form_starts_from_the_members_defaults_and_fills_the_rest(server):
    from tests.cogs.test_forms_e2e import member_message_with_images, open_menu, submit

    await settings(server, {"model": "doubao-seedream-4-0", "ratio": "16:9", "n": 2, "speed": "fast"})
    message, _ = member_message_with_images(server.rig)
    form = await open_menu(server.rig, message)
    record = await submit(server.rig, form, {"Prompt": "combine these"})
    await finished(server, record)
    sent = server.rig.toapis.submissions[-1]
    assert (sent["model"], sent["size"], sent["n"], sent["metadata"].get("optimize_prompt_options")) == (
        "doubao-seedream-4-0",
        "16:9",
        2,
        {"mode": "fast"},
    )


async def test_a_member_whose_defaults_cannot_be_read_still_gets_the_image_and_is_told(server, start_bot):
    member = server.new_member()
    await settings(server, {"n": 3}, user_id=member)
    store = server.rig.bot.store
    assert store is not None
    async with store.engine.begin() as conn:
        await conn.execute(sa.text("ALTER TABLE member_preferences RENAME TO unreadable"))
    await server.rig.bot.close()
    rig = await start_bot()  # nothing cached: the defaults must be read, and the read fails
    await eventually(lambda: rig.bot.get_guild(GUILD), what="the server is known to the bot")
    server = Server(rig)
    record = await server.imagine("a lighthouse", user_id=member)
    note = await note_of(server, record)
    message = await finished(server, record)
    assert (note, status_of(message)[:1], server.rig.toapis.submissions[-1]["n"]) == (
        str(PREFERENCES_UNREADABLE),
        "✅",
        1,
    )


async def test_images_past_the_tenth_are_spoilers_too(server):
    await server.admin("spoiler", {"setting": "on"})
    message = await finished(server, await server.imagine("a lighthouse", n=12))
    reply = await server.fake.wait_for_message(
        lambda m: m.message_reference is not None and m.message_reference.get("message_id") == str(message.id)
    )
    names = [a.filename for a in (*message.attachments, *reply.attachments)]
    assert (len(names), all(name.startswith("SPOILER_") for name in names)) == (12, True)


async def test_vary_finds_a_spoilered_image_in_its_message(server):
    member = server.new_member()
    await settings(server, {"spoiler": True}, user_id=member)
    record = await server.imagine("a lighthouse", user_id=member)
    message = await finished(server, record)
    await admin_e2e.final_job(server.rig, record)  # what was delivered is recorded
    vary = await server.fake.send_interaction(
        server.fake.component_interaction(message, _button(message, "vary"), user_id=member)
    )
    again = await finished(server, vary)
    assert (
        len(server.rig.toapis.submissions[-1]["image_urls"]),
        [a.filename.startswith("SPOILER_") for a in again.attachments],
    ) == (1, [True])
