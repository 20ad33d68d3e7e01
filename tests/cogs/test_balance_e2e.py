"""The ToAPIs balance through the real bot: a refusal for balance tells the member plainly and gives the
quota back; a low balance is posted once to the operator channel, not once per job."""

from __future__ import annotations

import json

from bot.jobs.records import JobState
from bot.jobs.runner import BUDGET_USED_UP
from tests.cogs.test_durable_e2e import final_job_of
from tests.fakes.toapis import make_image
from tests.rig import eventually

GENERATIONS = "/v1/images/generations"


def _operator_lines(rig, channel_id: int) -> list[str]:
    return [m.content for m in rig.discord.messages.values() if m.channel_id == channel_id]


async def test_a_submission_refused_for_balance_says_the_budget_is_used_up_and_charges_nothing(start_bot):
    operator = 555000111
    rig = await start_bot(low_balance_usd=5.0, operator_channel_id=operator)
    rig.discord.channel(operator, guild_id=rig.discord.guild_id)
    await rig.bot.guild_settings.update(rig.discord.guild_id, lambda s: s.replace(daily_member_quota=4))
    await eventually(lambda: rig.toapis.balance_reads == 1, what="the balance read at start-up")
    rig.toapis.balance.update(remain_balance=0, remain_credits=0)
    rig.toapis.inject("POST", GENERATIONS, 402, {"error": {"message": "Insufficient balance", "code": "402"}})

    record = await rig.imagine(prompt="a fox", n=2)
    message = await rig.finished(record)
    job = await final_job_of(rig, record)
    used = await rig.bot.ledger.values([*job.quota_keys, *job.active_keys])
    line = await rig.discord.wait_for_message(lambda m: m.channel_id == operator)
    assert (
        job.state,
        job.error,
        str(BUDGET_USED_UP) in json.dumps(message.embeds, ensure_ascii=False),
        set(used.values()),
        len(rig.toapis.submissions),
        line.content.startswith("⚠️ The ToAPIs balance is low: $0.00 left"),
        line.pings,
    ) == (JobState.FAILED, str(BUDGET_USED_UP), True, {0}, 0, True, set())


async def test_a_low_balance_is_posted_to_the_operator_channel_once_per_crossing(start_bot):
    operator = 555000222
    # 0.001 minutes: the watch reads about every 60 ms, so many reads happen while the test waits.
    rig = await start_bot(low_balance_usd=5.0, operator_channel_id=operator, balance_check_minutes=0.001)
    rig.discord.channel(operator, guild_id=rig.discord.guild_id)
    await eventually(lambda: rig.toapis.balance_reads >= 2, what="the watch reading the balance")

    rig.toapis.balance.update(remain_balance=3.5, remain_credits=700)
    await eventually(lambda: _operator_lines(rig, operator), what="the low-balance line")
    reads = rig.toapis.balance_reads
    # Jobs keep running on the low balance, and the watch keeps reading it: still one line.
    await rig.finished(await rig.imagine(prompt="a fox"))
    await eventually(lambda: rig.toapis.balance_reads >= reads + 5, what="five more reads")
    once = _operator_lines(rig, operator)

    rig.toapis.balance.update(remain_balance=20)  # topped up: the alert re-arms
    reads = rig.toapis.balance_reads
    await eventually(lambda: rig.toapis.balance_reads >= reads + 2, what="reads after the top-up")
    rig.toapis.balance.update(remain_balance=1, remain_credits=200)
    await eventually(lambda: len(_operator_lines(rig, operator)) == 2, what="the second crossing")
    assert (once, _operator_lines(rig, operator)[1].split(",")[0]) == (
        [
            "⚠️ The ToAPIs balance is low: $3.50 left (700 credits), below LOW_BALANCE_USD ($5.00). "
            "Top up the account, or image requests will start failing."
        ],
        "⚠️ The ToAPIs balance is low: $1.00 left (200 credits)",
    )


async def test_a_reference_upload_refused_for_balance_says_the_same_and_tells_the_operator(start_bot):
    operator = 555000333
    rig = await start_bot(low_balance_usd=5.0, operator_channel_id=operator)
    rig.discord.channel(operator, guild_id=rig.discord.guild_id)
    await eventually(lambda: rig.toapis.balance_reads == 1, what="the balance read at start-up")
    rig.toapis.balance.update(remain_balance=0.5, remain_credits=100)
    refusal = {"success": False, "message": "Insufficient balance"}
    rig.toapis.inject("POST", "/v1/uploads/images", 403, refusal)

    reference = rig.discord.make_attachment("fox.png", make_image(64, 64, "PNG"))
    record = await rig.imagine(prompt="like this", image1=reference)
    await rig.finished(record)
    job = await final_job_of(rig, record)
    line = await rig.discord.wait_for_message(lambda m: m.channel_id == operator)
    assert (job.error, len(rig.toapis.submissions), line.content.split(",")[0]) == (
        str(BUDGET_USED_UP),
        0,
        "⚠️ The ToAPIs balance is low: $0.50 left (100 credits)",
    )
