"""Use it anywhere: the real bot used from a member's own (user) install, through the fakes.

A user install reaches places the bot is not a member of: a server that never installed it
(context 0, `authorizing_integration_owners` naming only the user), the bot's DM (context 1) and
group DMs (context 2). There the bot answers only through the interaction token: these tests
check that no channel endpoint is ever tried there, that a job outliving the token's 15 minutes
reaches the member by DM (or stays in /imagine-history when their DMs are closed), that Discord's
forced private answers are handled, and that only the operator's rules apply.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bot.jobs.records import JobRecord, JobState
from bot.quota import day_key
from bot.schema import guild_settings_table
from cogs.delivery import RESULT_BY_DM
from cogs.installs import SERVER_INSTALL_ONLY
from cogs.launcher import FORCED_PRIVATE
from tests.cogs.test_durable_e2e import STALLED, _crash_while_running, final_job_of, let_tasks_finish
from tests.fakes.discord import FakeDiscord, FakeMessage, InteractionRecord, RecordedRequest
from tests.fakes.toapis import make_image
from tests.rig import RunningBot, status_of

pytestmark = pytest.mark.asyncio

OTHER_SERVER = 5151  # a server that never installed the bot
MEMBER_COMMANDS = {"imagine", "imagine-quota", "imagine-history", "imagine-settings", "imagine-forget"}
BLOCKED = "Your prompt contains a word or phrase this bot does not allow. Change the prompt and try again."

DM_NOTICE = str(RESULT_BY_DM)  # the notice before the token dies, in English (the member's language)


# --------------------------------------------------------------------------- helpers


async def imagine_there(
    rig: RunningBot, *, guild_id: int | None = OTHER_SERVER, **options: Any
) -> InteractionRecord:
    """/imagine from the member's user install: in a server without the bot, or (guild_id None) a group DM."""
    flags = {k: options.pop(k) for k in ("external_apps",) if k in options}
    payload = rig.discord.slash_command(
        "imagine",
        options,
        guild_id=guild_id,
        install="user",
        private_channel=guild_id is None,
        **flags,
    )
    return await rig.discord.send_interaction(payload)


def hidden_channel_requests(fake: FakeDiscord) -> list[RecordedRequest]:
    """Every request the bot made to a channel endpoint of a channel it cannot see."""
    return [
        r
        for r in fake.requests
        if r.params.get("channel_id", "").isdigit() and int(r.params["channel_id"]) in fake.hidden_channels
    ]


def dm_messages(fake: FakeDiscord, user_id: int) -> list[FakeMessage]:
    channel_id = fake.dm_channels.get(user_id)
    return [m for m in fake.messages.values() if m.channel_id == channel_id and not m.deleted]


async def answer_of(rig: RunningBot, record: InteractionRecord) -> tuple[bool, str | None]:
    await rig.discord.wait_for(lambda _: record.acknowledged)
    return record.ephemeral, record.callback["data"].get("content")


async def charged_today(rig: RunningBot, job: JobRecord) -> int:
    """The images counted against the member today (the operator's daily counter), once settled."""
    key = f"u:{job.user_id}:{day_key(job.created_at)}"
    return (await rig.bot.ledger.values([key])).get(key, 0)


async def until_logged(caplog: pytest.LogCaptureFixture, text: str) -> None:
    """Wait until the bot logged `text` (the log is what an operator sees of that failure)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while text not in caplog.text:
        if loop.time() > deadline:
            raise AssertionError(f"never logged {text!r}")
        await asyncio.sleep(0.02)


def short_token(rig: RunningBot, *, lifetime: float = 6.0, margin: float = 5.0) -> None:
    """Interaction tokens that die within seconds, so a job outlives its token within a test.

    The bot gives up the token (and tells the member) a second after the request; the test then
    expires it in the fake itself (`expire_interaction`), so nothing waits for the clock but that
    one second, and a slow machine only delays the notice."""
    rig.bot.launcher.token_lifetime = lifetime
    rig.bot.launcher.token_margin = margin
    rig.discord.token_ttl = lifetime


# --------------------------------------------------------------------------- registration


async def test_the_members_commands_are_registered_for_both_installs_and_every_context(start_bot):
    rig = await start_bot()
    registered = {c["name"]: c for c in rig.discord.commands["global"]}
    menu = next(c for c in registered.values() if c["type"] == 3)
    anywhere = {
        name: (c.get("integration_types"), c.get("contexts"))
        for name, c in registered.items()
        if name in MEMBER_COMMANDS or c is menu
    }
    assert anywhere == {name: ([0, 1], [0, 1, 2]) for name in (*MEMBER_COMMANDS, menu["name"])}
    admin = registered["imagine-admin"]
    assert (admin["integration_types"], admin["contexts"]) == ([0], [0])


async def test_changing_where_a_command_may_be_used_registers_the_commands_again(start_bot):
    rig = await start_bot()
    assert await rig.bot.register_commands() is False  # unchanged since the start
    history = rig.bot.tree.get_command("imagine-history")
    assert history is not None
    history.allowed_installs = SERVER_INSTALL_ONLY
    synced = await rig.bot.register_commands()
    history_now = next(c for c in rig.discord.commands["global"] if c["name"] == "imagine-history")
    assert (synced, history_now["integration_types"]) == (True, [0])


# --------------------------------------------------------------------------- where it is used


async def test_imagine_in_a_dm_with_the_bot_is_delivered_and_remembered_as_a_bot_dm(start_bot):
    rig = await start_bot(allow_dms=True)
    payload = rig.discord.slash_command("imagine", {"prompt": "a fox", "n": 2}, dm=True, install="user")
    record = await rig.discord.send_interaction(payload)
    message = await rig.finished(record)
    job = await final_job_of(rig, record)
    assert (
        payload["context"],
        status_of(message).startswith("✅ 2 images"),
        len(message.attachments),
        (job.context, job.installed_by, job.bot_in_channel, job.guild_id),
    ) == (1, True, 2, ("bot_dm", "user", True, None))


async def test_a_user_install_in_a_server_without_the_bot_delivers_through_the_token_only(start_bot):
    rig = await start_bot()
    record = await imagine_there(rig, prompt="a lighthouse", n=2)
    message = await rig.finished(record)
    job = await final_job_of(rig, record)
    assert (
        status_of(message).startswith("✅ 2 images"),
        len(message.attachments),
        message.ephemeral,
        (job.context, job.installed_by, job.bot_in_channel, job.guild_id),
        hidden_channel_requests(rig.discord),
        [r.path for r in rig.discord.requests if r.path.startswith("/channels/")],
    ) == (True, 2, False, ("guild", "user", False, OTHER_SERVER), [], [])


async def test_a_group_dm_is_served_through_the_token_only(start_bot):
    rig = await start_bot(allow_dms=True)
    record = await imagine_there(rig, guild_id=None, prompt="a kite")
    message = await rig.finished(record)
    job = await final_job_of(rig, record)
    assert (
        status_of(message).startswith("✅ 1 image"),
        (job.context, job.bot_in_channel),
        [r.path for r in rig.discord.requests if r.path.startswith("/channels/")],
    ) == (True, ("private_channel", False), [])


async def test_a_job_outliving_its_token_tells_the_member_then_arrives_by_dm_with_a_link_back(start_bot):
    rig = await start_bot()
    short_token(rig)
    rig.toapis.plan = STALLED
    record = await imagine_there(rig, prompt="a slow glacier", n=2)
    noticed = await rig.discord.wait_for(
        lambda _: (
            record.original if record.original and record.original.content == str(RESULT_BY_DM) else None
        )
    )
    rig.discord.expire_interaction(record)
    let_tasks_finish(rig.toapis)
    job = await final_job_of(rig, record)
    user_id = rig.discord.user_id
    dm = await rig.discord.wait_for(lambda f: dm_messages(f, user_id) or None)
    charged = await charged_today(rig, job)
    link = f"https://discord.com/channels/{OTHER_SERVER}/{job.channel_id}/{noticed.id}"
    assert (
        job.state,
        charged,
        [m.content for m in dm],
        [len(m.attachments) for m in dm],
        status_of(dm[0]).startswith("✅ 2 images"),
        hidden_channel_requests(rig.discord),
        rig.toapis.submit_attempts,
    ) == (
        JobState.DONE,
        2,
        [f"Here is the result of your /imagine request: {link}"],
        [2],
        True,
        [],
        1,
    )


async def test_closed_dms_keep_the_images_in_history_and_the_log_says_so(start_bot, caplog):
    caplog.set_level(logging.INFO)
    rig = await start_bot()
    rig.discord.closed_dms.add(rig.discord.user_id)
    short_token(rig)
    rig.toapis.plan = STALLED
    record = await imagine_there(rig, prompt="a closed door")
    await rig.discord.wait_for(
        lambda _: (
            record.original if record.original and record.original.content == str(RESULT_BY_DM) else None
        )
    )
    rig.discord.expire_interaction(record)
    let_tasks_finish(rig.toapis)
    job = await final_job_of(rig, record)

    rig.bot.launcher.token_lifetime = 15 * 60  # the member's next interaction has a fresh token
    rig.discord.token_ttl = 15 * 60
    history = await rig.discord.send_interaction(
        rig.discord.slash_command("imagine-history", {}, guild_id=OTHER_SERVER, install="user")
    )
    private, text = await answer_of(rig, history)
    assert job.task_id is not None
    url = rig.toapis.image_urls(job.task_id)[0]
    charged = await charged_today(rig, job)
    assert (
        job.state,
        charged,
        job.generated_images,
        "stays in /imagine-history" in caplog.text,
        private,
        "a closed door" in (text or ""),
        "not delivered (your DMs were closed), here, until" in (text or ""),
        f"[1]({url})" in (text or ""),
        dm_messages(rig.discord, rig.discord.user_id),
        hidden_channel_requests(rig.discord),
        rig.toapis.submit_attempts,
    ) == (JobState.DONE, 1, 1, True, True, True, True, True, [], [], 1)


async def test_a_server_forbidding_external_apps_gets_a_private_result_and_one_note_why(start_bot):
    rig = await start_bot()
    record = await imagine_there(rig, prompt="a secret garden", external_apps=False)
    message = await rig.finished(record)
    second = await imagine_there(rig, prompt="a second garden", external_apps=False)
    again = await rig.finished(second)
    assert (
        (message.ephemeral, again.ephemeral),
        status_of(message).startswith("✅ 1 image"),
        len(message.attachments),
        [(m.content, m.ephemeral) for m in record.followups],
        [m.content for m in second.followups],
        hidden_channel_requests(rig.discord),
    ) == ((True, True), True, 1, [(str(FORCED_PRIVATE), True)], [], [])


async def test_a_job_failing_after_its_token_expired_is_told_by_dm_and_charges_nothing(start_bot):
    rig = await start_bot()
    short_token(rig)
    rig.toapis.plan = dataclasses.replace(STALLED, outcome="failed")
    record = await imagine_there(rig, prompt="a refused picture")
    await rig.discord.wait_for(
        lambda _: (
            record.original if record.original and record.original.content == str(RESULT_BY_DM) else None
        )
    )
    rig.discord.expire_interaction(record)
    let_tasks_finish(rig.toapis)
    job = await final_job_of(rig, record)
    user_id = rig.discord.user_id
    dm = await rig.discord.wait_for(lambda f: dm_messages(f, user_id) or None)
    assert (
        job.state,
        await charged_today(rig, job),
        status_of(dm[0]).startswith("❌"),
        dm[0].content.startswith(
            "Here is the result of your /imagine request: https://discord.com/channels/"
        ),
        hidden_channel_requests(rig.discord),
    ) == (JobState.FAILED, 0, True, True, [])


async def test_when_the_message_is_gone_before_the_notice_the_result_still_arrives_by_dm(start_bot, caplog):
    caplog.set_level(logging.INFO)
    rig = await start_bot()
    short_token(rig)
    rig.toapis.plan = STALLED
    # The member deleted the message meanwhile: Discord answers every edit 404 Unknown Message.
    rig.discord.inject("PATCH", r"/webhooks/\d+/[^/]+/messages/\d+$", 404, times=100)
    record = await imagine_there(rig, prompt="a windy hill")
    await until_logged(caplog, "the job message is deleted")
    rig.discord.expire_interaction(record)
    let_tasks_finish(rig.toapis)
    job = await final_job_of(rig, record)
    user_id = rig.discord.user_id
    dm = await rig.discord.wait_for(lambda f: dm_messages(f, user_id) or None)
    assert (job.state, [len(m.attachments) for m in dm], hidden_channel_requests(rig.discord)) == (
        JobState.DONE,
        [1],
        [],
    )


async def test_a_group_dm_is_refused_privately_unless_the_operator_allows_dms(start_bot):
    rig = await start_bot()
    answer = await answer_of(rig, await imagine_there(rig, guild_id=None, prompt="a kite"))
    assert (answer, rig.toapis.submit_attempts, hidden_channel_requests(rig.discord)) == (
        (True, "Image generation is not available in direct messages. Use /imagine in a server."),
        0,
        [],
    )


# --------------------------------------------------------------------------- the operator's rules there


@pytest.fixture
def operator_blocklist(tmp_path: Path) -> Path:
    path = tmp_path / "blocklist.txt"
    path.write_text("# the operator's own list\nword: dragon\nregex: /castle\\d+/\n", encoding="utf-8")
    return path


async def test_the_operator_blocklist_refuses_in_a_server_without_the_bot_and_in_an_installing_one(
    start_bot, operator_blocklist
):
    rig = await start_bot(operator_blocklist_file=operator_blocklist)
    there = await answer_of(rig, await imagine_there(rig, prompt="a DRAG0N over hills"))
    here = await answer_of(rig, await rig.imagine(prompt="castle42 at night"))
    allowed = await rig.finished(await rig.imagine(prompt="a quiet meadow"))
    assert (there, here, status_of(allowed).startswith("✅"), rig.toapis.submit_attempts) == (
        (True, BLOCKED),
        (True, BLOCKED),
        True,
        1,
    )


async def test_the_global_daily_cap_applies_to_a_user_install(start_bot):
    rig = await start_bot(global_daily_image_cap=2)
    await rig.finished(await imagine_there(rig, prompt="one", n=2))
    private, text = await answer_of(rig, await imagine_there(rig, prompt="two"))
    assert (private, (text or "").split(" — ")[0], len(rig.toapis.submissions)) == (
        True,
        "Daily (for this bot) limit of 2 images reached",
        1,
    )


async def test_no_server_settings_are_read_or_written_for_a_server_that_never_installed_the_bot(start_bot):
    rig = await start_bot()
    record = await imagine_there(rig, prompt="a field of tulips")
    await rig.finished(record)
    quota = await rig.discord.send_interaction(
        rig.discord.slash_command("imagine-quota", {}, guild_id=OTHER_SERVER, install="user")
    )
    await answer_of(rig, quota)
    job = await final_job_of(rig, record)
    assert rig.bot.store is not None
    async with rig.bot.store.engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(guild_settings_table.c.guild_id).where(
                    guild_settings_table.c.guild_id == OTHER_SERVER
                )
            )
        ).all()
    # Every read of a server's settings goes through the store's cache: the server is not in it.
    assert (rows, OTHER_SERVER in rig.bot.guild_settings._cache, job.quota_keys) == (
        [],
        False,
        (f"u:{rig.discord.user_id}:{day_key(job.created_at)}",),
    )


async def test_allowed_guild_ids_also_limit_a_user_install_in_another_server(start_bot, discord_fake):
    rig = await start_bot(allowed_guild_ids=frozenset({discord_fake.guild_id}))
    answer = await answer_of(rig, await imagine_there(rig, prompt="a fox"))
    assert (answer, rig.toapis.submit_attempts) == ((True, "This bot is not available in this server."), 0)


async def test_the_message_menu_there_reads_no_server_settings_and_delivers_through_the_token(start_bot):
    rig = await start_bot()
    fake = rig.discord
    channel_id = fake.snowflake()
    fake.channel(channel_id, guild_id=OTHER_SERVER)
    fake.hidden_channels[channel_id] = 50001  # a channel of a server the bot is not in
    photo = fake.make_attachment("cat.png", make_image(64, 64, "PNG"))
    posted = fake.post_message("my cat", attachments=[photo], channel_id=channel_id)
    menu = await fake.send_interaction(fake.message_command("Imagine with these images", posted))
    await fake.wait_for(lambda _: menu.acknowledged)
    assert menu.callback_type == 9, menu.callback
    submitted = await fake.send_interaction(fake.modal_reply(menu, {"Prompt": "my cat as a lion"}))
    message = await rig.finished(submitted)
    job = await final_job_of(rig, submitted)
    assert (
        (menu.payload["context"], menu.payload["authorizing_integration_owners"]),
        status_of(message).startswith("✅ 1 image"),
        (job.reference_count, job.bot_in_channel),
        OTHER_SERVER in rig.bot.guild_settings._cache,
        hidden_channel_requests(fake),
    ) == ((0, {"1": str(fake.user_id)}), True, (1, False), False, [])


# --------------------------------------------------------------------------- buttons and restarts there


async def test_reroll_there_delivers_the_new_job_through_the_clicks_own_token(start_bot):
    rig = await start_bot()
    first = await imagine_there(rig, prompt="a red balloon")
    message = await rig.finished(first)
    job = await final_job_of(rig, first)
    click = await rig.discord.send_interaction(
        rig.discord.component_interaction(message, f"imagine:reroll:{job.id}")
    )
    rerolled = await rig.finished(click)
    again = await final_job_of(rig, click)
    assert (
        click.payload["context"],
        status_of(rerolled).startswith("✅ 1 image"),
        rerolled.id != message.id,
        (again.prompt, again.bot_in_channel),
        hidden_channel_requests(rig.discord),
    ) == (0, True, True, ("a red balloon", False), [])


async def test_remix_there_opens_the_form_and_runs_the_edited_prompt_through_the_submits_token(start_bot):
    rig = await start_bot()
    first = await imagine_there(rig, prompt="a red balloon")
    message = await rig.finished(first)
    job = await final_job_of(rig, first)
    click = await rig.discord.send_interaction(
        rig.discord.component_interaction(message, f"imagine:remix:{job.id}")
    )
    await rig.discord.wait_for(lambda _: click.acknowledged)
    submit = await rig.discord.send_interaction(rig.discord.modal_reply(click, {"Prompt": "a blue balloon"}))
    remixed = await rig.finished(submit)
    again = await final_job_of(rig, submit)
    assert (
        click.callback["type"],  # 9: the form, Discord's modal answer
        submit.payload["context"],
        status_of(remixed).startswith("✅ 1 image"),
        (again.prompt, again.bot_in_channel, again.installed_by),
        rig.toapis.submissions[-1]["prompt"],
        hidden_channel_requests(rig.discord),
    ) == (9, 0, True, ("a blue balloon", False, "user"), "a blue balloon", [])


async def test_vary_there_takes_the_image_from_the_clicked_message(start_bot):
    rig = await start_bot()
    first = await imagine_there(rig, prompt="a blue vase")
    message = await rig.finished(first)
    job = await final_job_of(rig, first)
    click = await rig.discord.send_interaction(
        rig.discord.component_interaction(message, f"imagine:vary:{job.id}")
    )
    varied = await rig.finished(click)
    again = await final_job_of(rig, click)
    assert (
        status_of(varied).startswith("✅ 1 image"),
        (again.prompt, again.reference_count, again.bot_in_channel),
        hidden_channel_requests(rig.discord),
    ) == (True, ("a blue vase", 1, False), [])


async def test_delete_there_removes_the_result_through_the_clicks_own_token(start_bot):
    rig = await start_bot()
    first = await imagine_there(rig, prompt="a paper boat")
    message = await rig.finished(first)
    job = await final_job_of(rig, first)
    click = await rig.discord.send_interaction(
        rig.discord.component_interaction(message, f"imagine:delete:{job.id}")
    )
    await rig.discord.wait_for(lambda _: click.followups or None)
    assert (
        message.deleted,
        [(m.content, m.ephemeral) for m in click.followups],
        hidden_channel_requests(rig.discord),
    ) == (True, [("Deleted.", True)], [])


async def test_a_job_resumed_after_a_restart_keeps_its_context_and_uses_only_the_token(start_bot):
    async def start_there(**overrides: Any) -> RunningBot:
        rig = await start_bot(**overrides)
        rig.imagine = lambda **options: imagine_there(rig, **options)
        return rig

    rig, record, job = await _crash_while_running(start_there)
    let_tasks_finish(rig.toapis)
    again = await start_bot()
    message = await again.finished(record)
    final = await final_job_of(again, record)
    assert (
        (job.context, job.bot_in_channel),
        status_of(message).startswith("✅ 2 images"),
        final.state,
        hidden_channel_requests(again.discord),
        again.toapis.submit_attempts,
    ) == (("guild", False), True, JobState.DONE, [], 1)
