"""`policy.admit`: may this member run this request here, and what it is charged against."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from bot import policy
from bot.blocklist import Blocklist, validate_entry
from bot.catalog import builtin_catalog
from bot.guild_settings import GuildSettings
from bot.jobs.request import ImagineRequest, RequestOptions, build_request
from bot.quota import Cooldown, Limit
from bot.references import ReferenceSource

CATALOG = builtin_catalog()
NOW = datetime(2026, 11, 21, 15, 30, tzinfo=UTC).timestamp()
MIDNIGHT = datetime(2026, 11, 22, tzinfo=UTC).timestamp()
NEXT_MONTH = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
GUILD, USER, CHANNEL, THREAD_PARENT, ROLE = 10, 20, 30, 31, 40
ANYWHERE = policy.OperatorRules()


def request(**options: Any) -> ImagineRequest:
    asked = RequestOptions(prompt=options.pop("prompt", "a red fox"), **options)
    return build_request(CATALOG, asked, default_model="doubao-seedream-5-0", requester_id=USER)


def member(**changes: Any) -> policy.Requester:
    values: dict[str, Any] = {
        "user_id": USER,
        "guild_id": GUILD,
        "channel_id": CHANNEL,
        "role_ids": frozenset(),
    }
    return policy.Requester(**(values | changes))


def refusal(
    settings: GuildSettings | None,
    who: policy.Requester | None = None,
    asked: ImagineRequest | None = None,
    operator: policy.OperatorRules = ANYWHERE,
) -> str:
    with pytest.raises(policy.RefusedError) as refused:
        policy.admit(settings, operator, who or member(), asked or request(), NOW)
    return str(refused.value)


def test_a_member_in_a_server_without_rules_is_admitted_and_charged_on_every_counter() -> None:
    plan = policy.admit(GuildSettings(), ANYWHERE, member(), request(n=3), NOW)
    assert (plan.images, plan.image_limits, plan.active_limits, plan.cooldown) == (
        3,
        (
            Limit(f"u:{USER}:2026-11-21", None, "global_daily", MIDNIGHT),
            Limit(f"m:{GUILD}:{USER}:2026-11-21", None, "member_daily", MIDNIGHT),
            Limit(f"g:{GUILD}:2026-11-21", None, "server_daily", MIDNIGHT),
            Limit(f"g:{GUILD}:2026-11", None, "server_monthly", NEXT_MONTH),
        ),
        (
            Limit(f"am:{GUILD}:{USER}", None, "member_active", None),
            Limit(f"ag:{GUILD}", None, "server_active", None),
        ),
        None,
    )


def test_the_plan_carries_the_servers_limits_the_best_role_quota_and_the_cooldown() -> None:
    settings = GuildSettings(
        daily_member_quota=5,
        role_quotas=((ROLE, 12), (ROLE + 1, 30)),
        daily_server_quota=100,
        monthly_server_quota=1000,
        max_concurrent_member=2,
        max_concurrent_server=8,
        cooldown_seconds=45,
    )
    operator = policy.OperatorRules(global_daily_cap=50)
    plan = policy.admit(settings, operator, member(role_ids=frozenset({ROLE})), request(), NOW)
    limits = {limit.rule: limit.limit for limit in plan.image_limits + plan.active_limits}
    assert (limits, plan.cooldown) == (
        {
            "global_daily": 50,
            "member_daily": 12,
            "server_daily": 100,
            "server_monthly": 1000,
            "member_active": 2,
            "server_active": 8,
        },
        Cooldown(key=f"cd:{GUILD}:{USER}", seconds=45),
    )


def test_an_owner_is_counted_but_never_limited_nor_cooled_down() -> None:
    settings = GuildSettings(daily_member_quota=1, max_concurrent_member=1, cooldown_seconds=60)
    operator = policy.OperatorRules(global_daily_cap=1, owner_ids=frozenset({USER}))
    plan = policy.admit(settings, operator, member(), request(n=4), NOW)
    assert (
        plan.images,
        len(plan.image_limits) + len(plan.active_limits),
        {limit.limit for limit in plan.image_limits + plan.active_limits},
        plan.cooldown,
    ) == (4, 6, {None}, None)


def test_in_direct_messages_only_the_bots_own_daily_cap_is_charged_when_dms_are_allowed() -> None:
    operator = policy.OperatorRules(global_daily_cap=7, allow_dms=True)
    plan = policy.admit(None, operator, member(guild_id=None), request(), NOW)
    assert (plan.image_limits, plan.active_limits) == (
        (Limit(f"u:{USER}:2026-11-21", 7, "global_daily", MIDNIGHT),),
        (),
    )


def test_direct_messages_are_refused_unless_the_operator_allows_them() -> None:
    assert refusal(None, member(guild_id=None)) == (
        "Image generation is not available in direct messages. Use /imagine in a server."
    )


def test_a_server_outside_the_operators_allow_list_is_refused() -> None:
    operator = policy.OperatorRules(allowed_guild_ids=frozenset({GUILD + 1}))
    assert refusal(GuildSettings(), operator=operator) == "This bot is not available in this server."


def test_a_server_that_turned_generation_off_says_an_admin_can_turn_it_on() -> None:
    assert refusal(GuildSettings(enabled=False)) == (
        "Image generation is turned off in this server. A server admin can turn it back on."
    )


def test_a_banned_member_is_refused() -> None:
    assert refusal(GuildSettings(banned_users=(USER,))) == (
        "You are not allowed to generate images in this server."
    )


def test_a_denied_channel_is_refused_and_a_thread_follows_its_channels_rule() -> None:
    settings = GuildSettings(denied_channels=(THREAD_PARENT,))
    in_thread = member(channel_id=CHANNEL + 100, parent_channel_id=THREAD_PARENT)
    assert (
        refusal(settings, in_thread)
        == "Image generation is not allowed in this channel. Try another channel."
    )


def test_outside_the_allowed_channels_the_refusal_names_them() -> None:
    settings = GuildSettings(allowed_channels=(CHANNEL + 1, CHANNEL + 2))
    assert refusal(settings) == (
        "Image generation is not allowed in this channel. "
        f"It is allowed in <#{CHANNEL + 1}>, <#{CHANNEL + 2}>."
    )


def test_a_member_without_an_allowed_role_is_told_which_roles_may() -> None:
    settings = GuildSettings(allowed_roles=(ROLE,))
    assert refusal(settings, member(role_ids=frozenset({ROLE + 1}))) == (
        f"Image generation here is for members with one of these roles: <@&{ROLE}>."
    )


def test_a_model_the_server_does_not_allow_is_refused_naming_the_allowed_ones() -> None:
    settings = GuildSettings(allowed_models=("doubao-seedream-4-0",))
    assert refusal(settings, asked=request(model_id="doubao-seedream-5-0")) == (
        "This server does not allow Seedream 5.0. Allowed models: `doubao-seedream-4-0`."
    )


def test_a_resolution_the_server_does_not_allow_is_refused() -> None:
    settings = GuildSettings(allowed_resolutions=("2K",))
    assert refusal(settings, asked=request(resolution="3K")) == (
        "This server does not allow resolution `3K`. Allowed: `2K`."
    )


def test_more_images_than_the_server_allows_per_request_is_refused() -> None:
    assert refusal(GuildSettings(max_n=2), asked=request(n=3)) == (
        "This server allows at most 2 images per request; you asked for 3. Lower `n`."
    )


def test_more_reference_images_than_the_server_allows_is_refused() -> None:
    image = ReferenceSource(
        filename="fox.png",
        url="https://cdn.example/fox.png",
        content_type="image/png",
        size=1000,
        width=64,
        height=64,
    )
    assert refusal(GuildSettings(max_references=1), asked=request(references=(image, image))) == (
        "This server allows at most 1 reference image; you gave 2."
    )


def test_a_prompt_matching_the_servers_blocklist_is_refused() -> None:
    settings = GuildSettings(blocklist=(validate_entry("word", "dragon"),))
    assert refusal(settings, asked=request(prompt="a small dragon")) == (
        "Your prompt contains a word or phrase this server does not allow. Change the prompt and try again."
    )


def test_an_owner_is_still_held_to_the_servers_fixed_rules() -> None:
    operator = policy.OperatorRules(owner_ids=frozenset({USER}))
    assert refusal(GuildSettings(enabled=False), operator=operator).startswith(
        "Image generation is turned off"
    )


OPERATOR_LIST = policy.OperatorRules(
    allow_dms=True,
    global_daily_cap=5,
    blocklist=Blocklist([validate_entry("word", "dragon")]),
)
OPERATOR_REFUSAL = (
    "Your prompt contains a word or phrase this bot does not allow. Change the prompt and try again."
)


@pytest.mark.parametrize(
    ("settings", "who"),
    [
        pytest.param(GuildSettings(), member(), id="installing-server"),
        pytest.param(None, member(server_installed=False), id="user-install-in-another-server"),
        pytest.param(None, member(guild_id=None), id="dm-or-group-dm"),
    ],
)
def test_the_operators_blocklist_refuses_everywhere(
    settings: GuildSettings | None, who: policy.Requester
) -> None:
    assert refusal(settings, who, request(prompt="a DRAGON at dawn"), OPERATOR_LIST) == OPERATOR_REFUSAL


def test_a_server_that_never_installed_the_bot_gets_only_the_operators_rules_and_counter() -> None:
    who = member(server_installed=False)
    plan = policy.admit(None, OPERATOR_LIST, who, request(n=15), NOW)
    assert (plan.image_limits, plan.active_limits, plan.cooldown) == (
        (Limit(f"u:{USER}:2026-11-21", 5, "global_daily", MIDNIGHT),),
        (),
        None,
    )


def test_the_operators_allow_list_also_refuses_a_user_install_in_another_server() -> None:
    operator = policy.OperatorRules(allowed_guild_ids=frozenset({GUILD + 1}))
    assert refusal(None, member(server_installed=False), operator=operator) == (
        "This bot is not available in this server."
    )
