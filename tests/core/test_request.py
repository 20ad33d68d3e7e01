"""The request builders: options to a validated request, a stored job's request asked again or rebuilt."""

from __future__ import annotations

from typing import Any

import pytest

from bot.catalog import builtin_catalog
from bot.jobs.records import JobRecord, JobState
from bot.jobs.request import (
    ImagineRequest,
    RequestError,
    RequestOptions,
    build_request,
    options_for_job,
    request_for_job,
)
from bot.references import ReferenceSource

CATALOG = builtin_catalog()
DEFAULT_MODEL = "doubao-seedream-5-0"
USER = 20
HOSTED = ("https://files.example/ref-1.png", "https://files.example/ref-2.png")
FOX = ReferenceSource(
    filename="fox.png",
    url="https://cdn.example/fox.png",
    content_type="image/png",
    size=1000,
    width=64,
    height=64,
)


def build(**options: Any) -> ImagineRequest:
    asked = RequestOptions(prompt=options.pop("prompt", "a red fox"), **options)
    return build_request(CATALOG, asked, default_model=DEFAULT_MODEL, requester_id=USER)


def problem(**options: Any) -> str:
    with pytest.raises(RequestError) as refused:
        build(**options)
    return str(refused.value)


def stored_job(**changes: Any) -> JobRecord:
    values: dict[str, Any] = {
        "id": 7,
        "state": JobState.DONE,
        "guild_id": 10,
        "channel_id": 30,
        "user_id": USER,
        "application_id": 1,
        "interaction_id": None,
        "interaction_token": None,
        "token_expires_at": None,
        "message_id": 40,
        "upload_limit": 10_000_000,
        "prompt": "a fox in the snow",
        "model": "doubao-seedream-5-0",
        "ratio": "16:9",
        "resolution": "3K",
        "n": 4,
        "reference_urls": HOSTED,
        "task_id": "task-1",
        "progress": 100,
        "result_urls": None,
        "result_expires_at": None,
        "delivered": None,
        "error": None,
        "created_at": 1_000.0,
        "updated_at": 1_000.0,
        "submitted_at": None,
        "finished_at": None,
        "reference_count": len(HOSTED),
    }
    return JobRecord(**(values | changes))


# -- build_request ---------------------------------------------------------------------------


def test_options_left_empty_get_the_default_model_ratio_count_and_resolution() -> None:
    request = build(prompt="  a red fox  ")
    assert (
        request.prompt,
        request.model.id,
        request.ratio,
        request.n,
        request.resolution,
        request.requester_id,
    ) == (
        "a red fox",
        DEFAULT_MODEL,
        "1:1",
        1,
        "2K",
        USER,
    )


def test_a_model_can_be_named_by_its_display_name() -> None:
    assert build(model_id="Seedream 4.0").model.id == "doubao-seedream-4-0"


def test_an_unknown_model_is_refused_naming_the_models() -> None:
    assert problem(model_id="dall-e") == (
        "Unknown model `dall-e`. Choose one of: `Seedream 4.0`, `Seedream 4.5`, `Seedream 5.0`, "
        "`Seedream 5.0 Pro`."
    )


def test_an_empty_prompt_is_refused() -> None:
    assert problem(prompt="   ") == "Your prompt is empty — describe the image you want to see."


def test_a_prompt_longer_than_the_model_takes_is_refused_with_both_lengths() -> None:
    assert problem(prompt="x" * 1001) == (
        "Your prompt is 1,001 characters long; Seedream 5.0 accepts at most 1,000. Shorten it and try again."
    )


def test_the_auto_ratio_needs_a_model_that_supports_it() -> None:
    assert problem(ratio="auto", hosted_references=HOSTED).startswith(
        "Seedream 5.0 does not support the `auto` ratio."
    )


def test_the_auto_ratio_needs_a_reference_image() -> None:
    assert problem(model_id="doubao-seedream-4-0", ratio="auto") == (
        "The `auto` ratio matches a reference image, so it needs at least one image: "
        "attach one, or choose a ratio."
    )


def test_too_many_images_is_refused_with_the_models_range() -> None:
    assert problem(n=16) == "Seedream 5.0 makes 1 to 15 images per request; you asked for 16."


def test_a_resolution_the_model_does_not_offer_is_refused() -> None:
    assert (
        problem(resolution="4K") == "Seedream 5.0 does not offer resolution `4K`. Choose one of: `2K`, `3K`."
    )


def test_a_resolution_on_a_model_without_one_is_refused() -> None:
    assert problem(model_id="doubao-seedream-4-0", resolution="2K").startswith(
        "Seedream 4.0 has no resolution option"
    )


def test_hosted_references_count_with_the_images_asked_for() -> None:
    assert problem(n=14, hosted_references=HOSTED) == (
        "With 2 reference images you can ask for at most 13 images; you asked for 14. Lower `n`."
    )


def test_references_are_kept_apart_as_given_and_as_hosted() -> None:
    request = build(references=(FOX,), hosted_references=HOSTED[:1])
    assert (request.reference_sources, request.reference_urls, request.reference_count) == (
        (FOX,),
        HOSTED[:1],
        2,
    )


# -- options_for_job: what the result buttons ask again ---------------------------------------


def test_a_reroll_asks_exactly_what_the_job_asked() -> None:
    assert options_for_job(stored_job()) == RequestOptions(
        prompt="a fox in the snow",
        model_id="doubao-seedream-5-0",
        ratio="16:9",
        n=4,
        resolution="3K",
        hosted_references=HOSTED,
    )


def test_changes_replace_only_what_they_name() -> None:
    options = options_for_job(stored_job(), references=(FOX,), hosted_references=(), n=2)
    assert (options.prompt, options.ratio, options.n, options.references, options.hosted_references) == (
        "a fox in the snow",
        "16:9",
        2,
        (FOX,),
        (),
    )


def test_a_change_that_is_not_an_option_is_an_error() -> None:
    with pytest.raises(TypeError):
        options_for_job(stored_job(), colour="red")


def test_a_jobs_options_build_the_request_it_was() -> None:
    job = stored_job()
    request = build_request(CATALOG, options_for_job(job), default_model=DEFAULT_MODEL, requester_id=USER)
    assert request == request_for_job(job, CATALOG)


# -- request_for_job: a stored job's request, as accepted --------------------------------------


def test_a_stored_job_rebuilds_its_request() -> None:
    request = request_for_job(stored_job(), CATALOG)
    assert (
        request.prompt,
        request.model,
        request.ratio,
        request.n,
        request.resolution,
        request.requester_id,
        request.reference_urls,
    ) == ("a fox in the snow", CATALOG.get("doubao-seedream-5-0"), "16:9", 4, "3K", USER, HOSTED)


def test_a_job_whose_model_left_the_catalog_keeps_its_model_id() -> None:
    request = request_for_job(stored_job(model="seedream-retired"), CATALOG)
    assert (request.model.id, request.model.display_name) == ("seedream-retired", "seedream-retired")
