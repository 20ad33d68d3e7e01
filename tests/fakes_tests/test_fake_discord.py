"""The fake Discord works with the REAL discord.py (no mocks) and refuses what Discord refuses."""

from __future__ import annotations

import asyncio
import io
import json
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest
from discord.ext import commands

from tests.fakes.discord import FakeDiscord
from tests.fakes.discord_spec import SPEC_AVAILABLE, validate_request

requires_spec = pytest.mark.skipif(
    not SPEC_AVAILABLE, reason="Discord's OpenAPI description not found: schema checks skipped"
)


def png_bytes(size: tuple[int, int] = (4, 3)) -> bytes:
    """A small real PNG (Pillow is a project dependency)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


class Outcomes:
    """What the bot's command handlers observed, awaitable from the test."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self._cond = asyncio.Condition()

    async def set(self, key: str, value: Any) -> None:
        async with self._cond:
            self.values[key] = value
            self._cond.notify_all()

    async def get(self, key: str, timeout: float = 5.0) -> Any:  # noqa: ASYNC109
        async def waiter() -> Any:
            async with self._cond:
                await self._cond.wait_for(lambda: key in self.values)
                return self.values[key]

        return await asyncio.wait_for(waiter(), timeout)


async def record_http_error(outcomes: Outcomes, key: str, coro: Any) -> None:
    """Await ``coro`` and store the HTTPException (status, code) it raised, or "ok"."""
    try:
        await coro
    except discord.HTTPException as exc:
        await outcomes.set(key, (exc.status, exc.code, type(exc).__name__))
    else:
        await outcomes.set(key, "ok")


NO_PINGS = discord.AllowedMentions.none()


def make_bot(outcomes: Outcomes) -> commands.AutoShardedBot:
    """An AutoShardedBot with slash commands exercising every fake route."""
    bot = commands.AutoShardedBot(
        command_prefix=commands.when_mentioned,
        intents=discord.Intents.default(),
        guild_ready_timeout=0.1,
        help_command=None,
    )

    @bot.tree.command(name="imagine", description="Draw a picture")
    async def imagine(interaction: discord.Interaction, prompt: str, count: int = 1) -> None:
        await interaction.response.send_message(f"Drawing {prompt} x{count}", allowed_mentions=NO_PINGS)
        await interaction.edit_original_response(
            content="Done", attachments=[discord.File(io.BytesIO(png_bytes()), filename="art.png")]
        )
        await interaction.followup.send("Here is more", ephemeral=True)
        await outcomes.set("imagine", interaction.filesize_limit)

    @bot.tree.command(name="slow", description="Defer, then answer")
    async def slow(interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)
        await interaction.followup.send(
            "finished", file=discord.File(io.BytesIO(b"x" * 64), filename="a.txt")
        )
        await outcomes.set("slow", "ok")

    @bot.tree.command(name="toolong", description="Edit with 2001 characters")
    async def toolong(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("short")
        await record_http_error(outcomes, "toolong", interaction.edit_original_response(content="x" * 2001))

    @bot.tree.command(name="bigembed", description="Embeds over 6000 characters in total")
    async def bigembed(interaction: discord.Interaction) -> None:
        embeds = [discord.Embed(title="t" * 200, description="d" * 4000) for _ in range(2)]
        await record_http_error(outcomes, "bigembed", interaction.response.send_message(embeds=embeds))

    @bot.tree.command(name="bigfile", description="Upload over the limit")
    async def bigfile(interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        big = discord.File(io.BytesIO(b"y" * (interaction.filesize_limit + 1)), filename="big.bin")
        await record_http_error(outcomes, "bigfile", interaction.followup.send(file=big))

    @bot.tree.command(name="gone", description="Edit a message Discord lost")
    async def gone(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("first")
        await record_http_error(outcomes, "gone", interaction.edit_original_response(content="second"))

    @bot.tree.command(name="busy", description="Followup through a 429")
    async def busy(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("first", file=discord.File(io.BytesIO(b"abc"), "a.txt"))
        await record_http_error(outcomes, "busy", interaction.followup.send("after the rate limit"))

    class Buttons(discord.ui.View):
        @discord.ui.button(label="Again", custom_id="again", style=discord.ButtonStyle.primary)
        async def again(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
            await interaction.response.edit_message(content="Clicked", view=None)
            await outcomes.set("clicked", interaction.message.id if interaction.message else None)

    @bot.tree.command(name="buttons", description="A message with a button")
    async def buttons(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("Press it", view=Buttons())

    class Ask(discord.ui.Modal, title="Prompt"):
        text: discord.ui.TextInput[Ask] = discord.ui.TextInput(label="Prompt", custom_id="prompt_text")

        async def on_submit(self, interaction: discord.Interaction) -> None:
            await interaction.response.send_message(f"You said {self.text.value}", allowed_mentions=NO_PINGS)

    @bot.tree.command(name="ask", description="Open a modal")
    async def ask(interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(Ask(custom_id="ask_modal"))

    return bot


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(upload_limit=256 * 1024) as server:
        yield server


@pytest.fixture
async def outcomes() -> Outcomes:
    return Outcomes()


@pytest.fixture
async def bot(fake: FakeDiscord, outcomes: Outcomes) -> AsyncIterator[commands.AutoShardedBot]:
    client = make_bot(outcomes)
    async with fake.run_client(client):
        yield client


# --------------------------------------------------------------------------- connecting


async def test_auto_sharded_bot_logs_in_and_gets_ready_through_the_fake_gateway(
    fake: FakeDiscord, bot: commands.AutoShardedBot
) -> None:
    sessions = await fake.wait_until_connected(timeout=5)
    assert bot.is_ready()
    assert bot.user is not None and bot.user.id == fake.bot_user_id
    assert bot.application_id == fake.application_id
    assert [s.shard_id for s in sessions] == [0]
    assert sessions[0].identify["shard"] == [0, 1]
    assert sessions[0].intents == discord.Intents.default().value
    assert sessions[0].compress == discord.utils._ActiveDecompressionContext.COMPRESSION_TYPE
    routes = [r.route for r in fake.requests]
    assert {"/users/@me", "/oauth2/applications/@me", "/gateway/bot"} <= set(routes)
    assert all(r.auth == "bot" for r in fake.requests)
    assert fake.heartbeats >= 1  # discord.py beats right after HELLO
    fake.assert_clean()


async def test_reconnect_request_makes_discord_py_resume_the_session(
    fake: FakeDiscord, bot: commands.AutoShardedBot
) -> None:
    [session] = await fake.wait_until_connected()
    seq_before = session.seq
    await fake.request_reconnect()
    await fake.wait_for(lambda f: session.resumes == 1 and session.connected, timeout=5)
    assert len(fake.sessions) == 1  # resumed, not re-identified
    assert session.events[-1][0] == "RESUMED" and session.seq == seq_before + 1


async def test_uncompressed_gateway_speaks_plain_json_text_frames(fake: FakeDiscord) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{fake.gateway_url}?v=10&encoding=json") as ws,
    ):
        hello = json.loads((await ws.receive()).data)
        assert hello["op"] == 10 and hello["d"]["heartbeat_interval"] == 41250
        await ws.send_json({"op": 2, "d": {"token": fake.token, "intents": 1, "properties": {}}})
        ready = json.loads((await ws.receive()).data)
        assert (ready["op"], ready["t"], ready["s"]) == (0, "READY", 1)
        assert ready["d"]["application"]["id"] == str(fake.application_id)
        await ws.send_json({"op": 1, "d": 1})
        assert json.loads((await ws.receive()).data) == {"op": 11}


async def test_zlib_stream_frames_end_with_sync_flush_and_share_one_stream(fake: FakeDiscord) -> None:
    url = f"{fake.gateway_url}?v=10&encoding=json&compress=zlib-stream"
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        inflate = zlib.decompressobj()
        hello = await ws.receive()
        assert hello.type is aiohttp.WSMsgType.BINARY and hello.data.endswith(b"\x00\x00\xff\xff")
        assert json.loads(inflate.decompress(hello.data))["op"] == 10
        await ws.send_json({"op": 2, "d": {"token": "wrong", "properties": {}}})
        closed = await ws.receive()
        assert closed.type is aiohttp.WSMsgType.CLOSE and closed.data == 4004
    assert "gateway: IDENTIFY with a wrong token" in fake.violations


# --------------------------------------------------------------------------- interactions


async def test_slash_command_reply_edit_with_attachment_and_followup_are_recorded(
    fake: FakeDiscord, bot: commands.AutoShardedBot, outcomes: Outcomes
) -> None:
    record = await fake.send_interaction(
        fake.slash_command("imagine", {"prompt": "@everyone a cat", "count": 2})
    )
    assert await outcomes.get("imagine") == 256 * 1024  # interaction.filesize_limit from the payload

    assert record.callback_type == 4 and not record.ephemeral
    original = record.original
    assert original is not None and original.content == "Done"
    assert original.history[0]["content"] == "Drawing @everyone a cat x2"
    assert original.pings == set()  # allowed_mentions none on the first write
    assert len(original.edits) == 1 and original.edits[0] >= record.callback_at
    [attachment] = original.attachments
    assert attachment.filename == "art.png" and attachment.data == png_bytes()
    assert (attachment.content_type, attachment.width, attachment.height) == ("image/png", 4, 3)
    [followup] = record.followups
    assert followup.content == "Here is more" and followup.ephemeral
    assert followup.interaction_metadata["original_response_message_id"] == str(original.id)

    edit = next(r for r in fake.requests if r.method == "PATCH")
    assert edit.route == "/webhooks/{webhook_id}/{webhook_token}/messages/@original"
    assert edit.json["attachments"] == [{"id": 0, "filename": "art.png"}]
    assert [f.filename for f in edit.files] == ["art.png"]

    async with aiohttp.ClientSession() as http, http.get(attachment.url) as resp:
        assert resp.status == 200 and await resp.read() == png_bytes()
    fake.assert_clean()


async def test_first_followup_after_defer_replaces_the_thinking_placeholder(
    fake: FakeDiscord, bot: commands.AutoShardedBot, outcomes: Outcomes
) -> None:
    record = await fake.send_interaction(fake.slash_command("slow"))
    assert await outcomes.get("slow") == "ok"
    assert record.callback_type == 5
    original = record.original
    assert original is not None and not original.loading
    assert original.content == "finished" and original.attachments[0].data == b"x" * 64
    assert record.followups == []
    fake.assert_clean()


async def test_button_click_updates_the_message_through_a_component_interaction(
    fake: FakeDiscord, bot: commands.AutoShardedBot, outcomes: Outcomes
) -> None:
    record = await fake.send_interaction(fake.slash_command("buttons"))
    message = await fake.wait_for(lambda f: record.original)
    assert message.components[0]["components"][0]["custom_id"] == "again"

    click = await fake.send_interaction(fake.component_interaction(message, "again"))
    assert await outcomes.get("clicked") == message.id
    assert click.callback_type == 7
    assert message.content == "Clicked" and message.components == [] and len(message.edits) == 1
    fake.assert_clean()


async def test_modal_is_opened_and_its_submission_reaches_on_submit(
    fake: FakeDiscord, bot: commands.AutoShardedBot
) -> None:
    record = await fake.send_interaction(fake.slash_command("ask"))
    await fake.wait_for(lambda f: record.callback_type == 9)
    assert record.callback["data"]["custom_id"] == "ask_modal"

    submit = await fake.send_interaction(fake.modal_submit("ask_modal", {"prompt_text": "a red fox"}))
    message = await fake.wait_for(lambda f: submit.original)
    assert message.content == "You said a red fox"
    fake.assert_clean()


async def test_second_callback_for_an_interaction_is_refused_with_40060(
    fake: FakeDiscord, bot: commands.AutoShardedBot
) -> None:
    record = await fake.send_interaction(fake.slash_command("buttons"))
    await fake.wait_for(lambda f: record.acknowledged)
    url = f"{fake.api_base}/interactions/{record.id}/{record.token}/callback"
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, json={"type": 4, "data": {"content": "again"}}) as resp,
    ):
        assert resp.status == 400 and resp.headers["Content-Type"] == "application/json"
        assert await resp.json() == {"message": "Interaction has already been acknowledged.", "code": 40060}


# --------------------------------------------------------------------------- refusals


async def test_edit_with_2001_characters_is_refused_with_invalid_form_body(
    fake: FakeDiscord, bot: commands.AutoShardedBot, outcomes: Outcomes
) -> None:
    await fake.send_interaction(fake.slash_command("toolong"))
    assert await outcomes.get("toolong") == (400, 50035, "HTTPException")
    refused = next(r for r in fake.requests if r.status == 400)
    assert refused.response["errors"]["content"]["_errors"][0]["code"] == "BASE_TYPE_MAX_LENGTH"
    assert any("content" in v and "2000" in v for v in fake.violations)


async def test_embeds_over_6000_characters_in_total_are_refused(
    fake: FakeDiscord, bot: commands.AutoShardedBot, outcomes: Outcomes
) -> None:
    record = await fake.send_interaction(fake.slash_command("bigembed"))
    assert await outcomes.get("bigembed") == (400, 50035, "HTTPException")
    assert not record.acknowledged  # a refused callback does not count
    refused = fake.requests[-1]
    assert refused.response["errors"]["data"]["embeds"]["_errors"][0]["code"] == "MAX_EMBED_SIZE_EXCEEDED"
    assert any("6000" in v for v in fake.violations)


async def test_file_over_the_upload_limit_is_refused_with_413(
    fake: FakeDiscord, bot: commands.AutoShardedBot, outcomes: Outcomes
) -> None:
    await fake.send_interaction(fake.slash_command("bigfile", attachment_size_limit=1024))
    assert await outcomes.get("bigfile") == (413, 40005, "HTTPException")
    assert any("FILE_TOO_LARGE" in v for v in fake.violations)


async def test_webhook_call_with_an_unknown_token_gets_401_invalid_webhook_token(fake: FakeDiscord) -> None:
    with fake.patch_discord_py():
        async with aiohttp.ClientSession() as http:
            webhook = discord.Webhook.partial(fake.application_id, "not-a-token", session=http)
            with pytest.raises(discord.HTTPException) as raised:
                await webhook.edit_message(123, content="hi")
    assert (raised.value.status, raised.value.code) == (401, 50027)
    assert fake.requests[-1].auth == "none"


async def test_bot_routes_without_the_bot_token_get_401(fake: FakeDiscord) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{fake.api_base}/users/@me") as resp:
        assert resp.status == 401 and resp.headers["Content-Type"] == "application/json"
        assert await resp.json() == {"message": "401: Unauthorized", "code": 0}


async def test_unknown_route_is_404_and_listed_as_a_violation(
    fake: FakeDiscord, bot: commands.AutoShardedBot
) -> None:
    with pytest.raises(discord.NotFound):
        await bot.http.request(discord.http.Route("GET", "/users/@me/guilds"))
    # Without Discord's spec beside the clone the fake cannot tell that the route exists in Discord.
    known = " (in Discord's spec, not implemented by the fake)" if SPEC_AVAILABLE else ""
    assert fake.violations == [f"unknown route GET /users/@me/guilds{known}"]
    with pytest.raises(AssertionError, match="unknown route"):
        fake.assert_clean()


# --------------------------------------------------------------------------- fault injection


async def test_injected_404_reaches_the_bot_as_not_found(
    fake: FakeDiscord, bot: commands.AutoShardedBot, outcomes: Outcomes
) -> None:
    injection = fake.inject("PATCH", r"/messages/@original$", 404)
    await fake.send_interaction(fake.slash_command("gone"))
    assert await outcomes.get("gone") == (404, 10008, "NotFound")
    assert injection.remaining == 0 and injection.hits[0].injected
    assert injection.hits[0].json["content"] == "second"  # recorded all the same


async def test_injected_429_is_waited_out_and_retried_by_discord_py(
    fake: FakeDiscord, bot: commands.AutoShardedBot, outcomes: Outcomes
) -> None:
    fake.inject(
        "POST", r"^/webhooks/\d+/[^/]+$", 429, {"message": "slow down", "retry_after": 0.2, "global": False}
    )
    record = await fake.send_interaction(fake.slash_command("busy"))
    assert await outcomes.get("busy") == "ok"
    limited, retried = [r for r in fake.requests if r.route == "/webhooks/{webhook_id}/{webhook_token}"]
    assert (limited.status, retried.status) == (429, 200)
    assert retried.at - limited.at >= 0.2
    assert [m.content for m in record.followups] == ["after the rate limit"]
    assert record.original is not None and record.original.attachments[0].data == b"abc"  # multipart callback


async def test_normal_answers_carry_generous_rate_limit_headers(fake: FakeDiscord) -> None:
    headers = {"Authorization": f"Bot {fake.token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{fake.api_base}/gateway/bot", headers=headers) as resp,
    ):
        assert resp.status == 200
        assert int(resp.headers["X-RateLimit-Remaining"]) > 100
        assert resp.headers["X-RateLimit-Bucket"] and float(resp.headers["X-RateLimit-Reset-After"]) > 0
        assert (await resp.json())["url"] == fake.gateway_url


# --------------------------------------------------------------------------- commands sync


async def test_command_sync_is_validated_recorded_and_echoed_with_ids(
    fake: FakeDiscord, bot: commands.AutoShardedBot
) -> None:
    synced = await bot.tree.sync()
    assert sorted(c.name for c in synced) == sorted(c.name for c in bot.tree.get_commands())
    assert all(c.id and c.application_id == fake.application_id for c in synced)
    [(scope, body)] = fake.command_syncs
    assert scope == "global" and {c["name"] for c in body} == {c.name for c in synced}

    guild = discord.Object(id=fake.guild_id)
    bot.tree.copy_global_to(guild=guild)
    await bot.tree.sync(guild=guild)
    assert fake.command_syncs[-1][0] == fake.guild_id
    payload = fake.slash_command("imagine", {"prompt": "x"})
    assert payload["data"]["guild_id"] == str(fake.guild_id)  # like Discord for guild commands
    fake.assert_clean()

    with pytest.raises(discord.HTTPException) as raised:
        await bot.http.bulk_upsert_global_commands(
            fake.application_id, [{"name": "Imagine", "description": "x"}]
        )
    assert raised.value.code == 50035
    assert any("APPLICATION_COMMAND_INVALID_NAME" in v for v in fake.violations)


# --------------------------------------------------------------------------- the spec checks


def test_channel_edit_is_held_to_2000_characters_although_the_spec_says_4000() -> None:
    [violation] = validate_request("PATCH", "/api/v10/channels/1/messages/2", {"content": "x" * 2001})
    assert violation.path == ("content",) and violation.code == "BASE_TYPE_MAX_LENGTH"


def test_uploaded_parts_must_be_listed_in_attachments() -> None:
    violations = validate_request(
        "POST",
        "/api/v10/webhooks/1/tok",
        {"content": "x", "attachments": [{"id": 0, "filename": "a.png"}]},
        file_fields=["files[0]", "files[1]"],
        file_sizes=[1, 1],
    )
    assert [v.code for v in violations] == ["ATTACHMENT_NOT_LISTED"]


def test_more_than_five_action_rows_are_refused() -> None:
    row = {"type": 1, "components": [{"type": 2, "style": 1, "custom_id": "a", "label": "A"}]}
    violations = validate_request(
        "POST", "/api/v10/interactions/1/tok/callback", {"type": 4, "data": {"components": [row] * 6}}
    )
    assert any(v.path == ("data", "components") for v in violations)


@requires_spec
def test_schema_errors_point_at_the_field_inside_discriminated_unions() -> None:
    button = {"type": 2, "style": 1, "custom_id": "x" * 101}
    body = {"type": 4, "data": {"components": [{"type": 1, "components": [button]}]}}
    [violation] = validate_request("POST", "/api/v10/interactions/1/tok/callback", body)
    assert violation.path == ("data", "components", 0, "components", 0, "custom_id")
    assert violation.code == "BASE_TYPE_MAX_LENGTH"


@requires_spec
def test_integer_attachment_ids_from_discord_py_are_accepted() -> None:
    body = {
        "content": "hi",
        "attachments": [{"id": 0, "filename": "a.png"}],
        "allowed_mentions": {"parse": []},
    }
    assert (
        validate_request(
            "PATCH", "/api/v10/webhooks/1/tok/messages/@original", body, file_fields=["files[0]"]
        )
        == []
    )


def test_without_the_spec_file_only_the_hand_written_checks_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from tests.fakes import discord_spec

    monkeypatch.setenv("DISCORD_API_SPEC", str(tmp_path / "missing.json"))
    assert not discord_spec.spec_available() and discord_spec.load_spec() is None
    button = {"type": 2, "style": 1, "custom_id": "x" * 101}  # only the schema knows this limit
    body = {"type": 4, "data": {"content": "x" * 2001, "components": [{"type": 1, "components": [button]}]}}
    violations = validate_request("POST", "/api/v10/interactions/1/tok/callback", body)
    assert [v.path for v in violations] == [("data", "content")]
