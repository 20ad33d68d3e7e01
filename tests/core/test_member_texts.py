"""What the core tells members, now texts to translate: the English is exactly what it was, every
refusal carries its text for the Discord layer, and each text reads in a member's language.

The expected translations come from the catalogs (`i18n.render` in Japanese), and each must
differ from the English: these pass once the catalogs are translated.
"""

from __future__ import annotations

import pytest

from bot import i18n, policy
from bot.catalog import builtin_catalog
from bot.guild_settings import GuildSettings
from bot.i18n import Text
from bot.jobs.request import RequestError, RequestOptions, build_request
from bot.preferences import NO_PREFERENCES, PreferenceError, change_preferences
from bot.quota import Limit, QuotaExceededError
from bot.retention import ForgetResult, forget_confirmation, forget_done

RESETS = 1_800_000_000.0
WHEN = "<t:1800000000:R>"
CATALOG = builtin_catalog()


def exceeded(rule: str, limit: int | None, used: int, asked: int = 1) -> QuotaExceededError:
    return QuotaExceededError(Limit(key="k", limit=limit, rule=rule, resets_at=RESETS), used, asked=asked)


@pytest.mark.parametrize(
    ("error", "english"),
    [
        (
            QuotaExceededError(Limit(key="k", limit=30, rule="cooldown"), 0, asked=1, retry_at=RESETS),
            f"Slow down — you can generate again {WHEN}.",
        ),
        (
            exceeded("member_active", 1, 1),
            "You already have 1 job running — wait for one to finish and try again.",
        ),
        (
            exceeded("member_active", 3, 3),
            "You already have 3 jobs running — wait for one to finish and try again.",
        ),
        (exceeded("server_active", 2, 2), "This server already has 2 jobs running — try again in a minute."),
        (
            exceeded("member_daily", 5, 3, asked=4),
            f"You have 2 of your 5 daily images left and you asked for 4. Ask for 2 or fewer — the limit "
            f"resets {WHEN}.",
        ),
        (
            exceeded("global_daily", 5, 4, asked=2),
            f"You have 1 of your 5 daily (for this bot) images left and you asked for 2. Ask for 1 or "
            f"fewer — the limit resets {WHEN}.",
        ),
        (
            exceeded("server_daily", 3, 2, asked=2),
            f"This server has 1 of its 3 daily images left and you asked for 2. Ask for 1 or fewer — the "
            f"limit resets {WHEN}.",
        ),
        (
            exceeded("server_monthly", 10, 1, asked=12),
            f"This server has 9 of its 10 monthly images left and you asked for 12. Ask for 9 or fewer — the "
            f"limit resets {WHEN}.",
        ),
        (exceeded("member_daily", 1, 1), f"Daily limit of 1 images reached — resets {WHEN}."),
        (exceeded("global_daily", 2, 2), f"Daily (for this bot) limit of 2 images reached — resets {WHEN}."),
        (
            exceeded("server_daily", 3, 3),
            f"This server's daily limit of 3 images is reached — resets {WHEN}.",
        ),
        (
            exceeded("server_monthly", 4, 4),
            f"This server's monthly limit of 4 images is reached — resets {WHEN}.",
        ),
    ],
)
def test_every_limit_reads_as_it_always_did_in_english(error: QuotaExceededError, english: str) -> None:
    refusal = policy.quota_refusal(error)
    assert (isinstance(refusal, Text), str(refusal)) == (True, english)


def test_a_policy_refusal_carries_its_text_and_its_english() -> None:
    settings = GuildSettings(enabled=False)
    who = policy.Requester(user_id=1, guild_id=2, channel_id=3)
    request = build_request(
        CATALOG, RequestOptions(prompt="a fox"), default_model="doubao-seedream-5-0", requester_id=1
    )
    with pytest.raises(policy.RefusedError) as refused:
        policy.check(settings, policy.OperatorRules(), who, request)
    english = "Image generation is turned off in this server. A server admin can turn it back on."
    assert (str(refused.value), str(refused.value.text), isinstance(refused.value.text, Text)) == (
        english,
        english,
        True,
    )


def test_an_option_refusal_and_a_settings_refusal_carry_their_texts() -> None:
    with pytest.raises(RequestError) as bad_option:
        build_request(
            CATALOG,
            RequestOptions(prompt="a fox", model_id="nope"),
            default_model="doubao-seedream-5-0",
            requester_id=1,
        )
    with pytest.raises(PreferenceError) as bad_setting:
        change_preferences(
            NO_PREFERENCES,
            CATALOG,
            default_model="doubao-seedream-5-0",
            changes={},
            reset="colour",
        )
    assert str(bad_option.value) == str(bad_option.value.text)
    assert str(bad_option.value).startswith("Unknown model `nope`. Choose one of: `Seedream")
    assert str(bad_setting.value.text) == (
        "`colour` is not a setting. Reset one of: `model`, `ratio`, `resolution`, `n`, `speed`, `spoiler`, "
        "or `everything`."
    )


@pytest.mark.parametrize(
    ("result", "member", "english"),
    [
        (ForgetResult(0, 0), None, "The bot has no job history of yours to delete."),
        (ForgetResult(0, 0), "<@7>", "<@7> has no job history in this server to delete."),
        (ForgetResult(3, 0), None, "Deleted the details of your 3 finished jobs."),
        (ForgetResult(1, 0), "<@7>", "Deleted the details of <@7>'s 1 finished job in this server."),
        (
            ForgetResult(2, 1),
            None,
            "Deleted the details of your 2 finished jobs. 1 job still running keeps its details until it "
            "ends (the bot needs them to deliver the images or give the quota back): run this again once "
            "it is done.",
        ),
        (
            ForgetResult(0, 2),
            "<@7>",
            "Deleted the details of <@7>'s 0 finished jobs in this server. 2 jobs still running keep their "
            "details until they end (the bot needs them to deliver the images or give the quota back): run "
            "this again once they are done.",
        ),
    ],
)
def test_what_a_forget_did_reads_as_it_always_did_in_english(
    result: ForgetResult, member: str | None, english: str
) -> None:
    assert str(forget_done(result, member=member)) == english


def test_the_forget_confirmation_names_the_retention_and_reads_in_japanese() -> None:
    kept, until_asked = forget_confirmation(30), forget_confirmation(None)
    assert "The bot deletes them by itself 30 days after each job." in str(kept)
    assert "This bot keeps them until you ask." in str(until_asked)
    japanese = i18n.render(kept, "ja")
    assert japanese != str(kept)
    assert "30" in japanese


def test_a_limit_reads_in_japanese_with_its_numbers_and_discords_timestamp() -> None:
    refusal = policy.quota_refusal(exceeded("member_daily", 5, 3, asked=4))
    japanese = i18n.render(refusal, "ja")
    assert japanese != str(refusal)
    assert (WHEN in japanese, "5" in japanese, "4" in japanese) == (True, True, True)
