"""`/imagine-admin usage` with the catalog's `price_per_image`: the period's estimated cost in the report
and per job in the CSV, through the real bot."""

from __future__ import annotations

from tests.cogs.test_admin_e2e import (  # noqa: F401  (discord_fake: the server is announced)
    MANAGER,
    Server,
    discord_fake,
    final_job,
    private_answer,
    read_csv,
)
from tests.fakes.toapis import TaskPlan
from tests.rig import eventually


async def test_usage_shows_the_estimated_cost_and_says_which_models_have_no_price(start_bot, tmp_path):
    catalog = tmp_path / "models.toml"
    catalog.write_text('[models."doubao-seedream-5-0"]\nprice_per_image = 0.04\n')
    rig = await start_bot(model_catalog_file=catalog)
    await eventually(lambda: rig.bot.get_guild(rig.discord.guild_ids[0]), what="the server is known")
    server = Server(rig)
    await final_job(rig, await server.imagine("two foxes", n=2))
    rig.toapis.plan = TaskPlan(image_count=1)
    await final_job(rig, await server.imagine("one of three", n=3))  # only the delivered one counts
    rig.toapis.plan = TaskPlan(outcome="failed")
    await final_job(rig, await server.imagine("a failed fox", n=4))  # failed: nothing counted
    rig.toapis.plan = TaskPlan()
    await final_job(rig, await server.imagine("an unpriced fox", model="Seedream 4.5"))

    record = await server.send("imagine-admin usage", {"period": "today"}, permissions=MANAGER)
    text = await private_answer(server.fake, record)
    rows = read_csv(record)
    assert (
        [line for line in text.splitlines() if line.startswith("**Estimated cost")],
        [(r["model"], r["images"], r["cost_usd"]) for r in rows],
    ) == (
        [
            "**Estimated cost today:** $0.12 — partial: 1 image of models without a price "
            "(doubao-seedream-4-5) not counted"
        ],
        [
            ("doubao-seedream-5-0", "2", "0.0800"),
            ("doubao-seedream-5-0", "1", "0.0400"),
            ("doubao-seedream-5-0", "0", "0.0000"),
            ("doubao-seedream-4-5", "1", ""),
        ],
    )


async def test_usage_shows_no_cost_when_no_model_has_a_price(start_bot):
    rig = await start_bot()
    await eventually(lambda: rig.bot.get_guild(rig.discord.guild_ids[0]), what="the server is known")
    server = Server(rig)
    await final_job(rig, await server.imagine("a fox"))
    record = await server.send("imagine-admin usage", {"period": "today"}, permissions=MANAGER)
    text = await private_answer(server.fake, record)
    assert ("Estimated cost" in text, [r["cost_usd"] for r in read_csv(record)]) == (False, [""])
