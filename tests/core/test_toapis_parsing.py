"""Pure parsing of ToAPIs answers: task bodies, error bodies, Retry-After."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from bot.toapis import (
    InvalidResponseError,
    ResultImage,
    TaskFailedError,
    extract_error_code,
    extract_error_message,
    parse_retry_after,
    parse_task,
)

A = "https://files.example.com/a.jpg"
B = "https://files.example.com/b.jpg"
C = "https://files.example.com/c.jpg"


def completed(**fields: object) -> dict[str, object]:
    return {"id": "task_img_1", "status": "completed", **fields}


# --------------------------------------------------------------------------- result URLs


def test_result_data_urls_are_read_in_order() -> None:
    task = parse_task(completed(result={"type": "image", "data": [{"url": A}, {"url": B}]}))
    assert task.image_urls == (A, B)


def test_layer_details_of_result_data_items_are_kept_with_their_urls() -> None:
    task = parse_task(
        completed(
            result={
                "type": "image",
                "data": [
                    {
                        "url": B,
                        "z_index": 1,
                        "name": "Fox\n",
                        "description": "The fox",
                        "bounding_box": [1, 2, 3, 4],
                    },
                    {"url": A, "z_index": "0"},
                    {"url": C, "z_index": True, "name": 7, "bounding_box": "left"},
                ],
            }
        )
    )
    assert (task.image_urls, task.images) == (
        (B, A, C),
        (
            ResultImage(B, z_index=1, name="Fox", description="The fox", bounding_box=(1.0, 2.0, 3.0, 4.0)),
            ResultImage(A, z_index=0),
            ResultImage(C),
        ),
    )


def test_every_image_of_other_result_shapes_has_no_layer_details() -> None:
    task = parse_task(completed(result={"images": [{"url": [A, B]}]}, url=C))
    assert task.images == (ResultImage(A), ResultImage(B), ResultImage(C))


def test_result_images_with_string_urls_are_read() -> None:
    task = parse_task(completed(result={"type": "image", "images": [{"url": A}, {"url": B}]}))
    assert task.image_urls == (A, B)


def test_result_images_with_list_urls_are_flattened() -> None:
    task = parse_task(completed(result={"images": [{"url": [A, B]}, {"url": [C]}]}))
    assert task.image_urls == (A, B, C)


def test_top_level_url_is_used_when_result_has_none() -> None:
    task = parse_task(completed(url=A, result={"type": "image"}))
    assert task.image_urls == (A,)


def test_urls_from_every_shape_are_deduplicated_in_documented_order() -> None:
    task = parse_task(
        completed(url=A, result={"data": [{"url": B}, {"url": A}], "images": [{"url": [C, B]}]})
    )
    assert task.image_urls == (B, A, C)


def test_junk_result_entries_are_skipped() -> None:
    junk = [
        None,
        123,
        "not a url",
        {"url": None},
        {"url": 5},
        {"url": "ftp://x/y.jpg"},
        {"nourl": A},
        {"url": B},
    ]
    task = parse_task(
        completed(result={"data": junk, "images": [{"url": [None, "data:image/png;base64,AA", C]}]})
    )
    assert task.image_urls == (B, C)


@pytest.mark.parametrize("result", [None, [], "weird", 42])
def test_result_null_or_odd_falls_back_to_top_level_url(result: object) -> None:
    task = parse_task(completed(url=A, result=result))
    assert task.image_urls == (A,)


def test_result_as_list_of_entries_is_accepted() -> None:
    task = parse_task(completed(result=[{"url": A}, {"url": B}]))
    assert task.image_urls == (A, B)


def test_missing_result_and_url_gives_no_images() -> None:
    assert parse_task(completed()).image_urls == ()


# --------------------------------------------------------------------------- status and fields


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("submitted", "queued"),
        ("queued", "queued"),
        ("pending", "queued"),
        ("in_progress", "in_progress"),
        ("processing", "in_progress"),
        ("running", "in_progress"),
        ("completed", "completed"),
        ("succeeded", "completed"),
        ("success", "completed"),
        ("failed", "failed"),
        ("error", "failed"),
        ("cancelled", "failed"),
        ("COMPLETED", "completed"),
    ],
)
def test_status_is_normalised(raw: str, expected: str) -> None:
    assert parse_task({"id": "t", "status": raw}).status == expected


def test_unknown_status_is_treated_as_in_progress_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="bot.toapis"):
        task = parse_task({"id": "t", "status": "warming_up"})
    assert (task.status, "warming_up" in caplog.text) == ("in_progress", True)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (40, 40),
        (55.6, 56),
        ("70", 70),
        ("12%", 12),
        (150, 100),
        (-5, 0),
        (None, None),
        ("abc", None),
        (True, None),
    ],
)
def test_progress_is_clamped_and_tolerant(raw: object, expected: int | None) -> None:
    assert parse_task({"id": "t", "status": "in_progress", "progress": raw}).progress == expected


def test_absent_progress_is_none() -> None:
    assert parse_task({"id": "t", "status": "queued"}).progress is None


@pytest.mark.parametrize(
    ("status", "final"), [("queued", False), ("in_progress", False), ("completed", True), ("failed", True)]
)
def test_is_final_only_for_completed_and_failed(status: str, final: bool) -> None:
    assert parse_task({"id": "t", "status": status}).is_final is final


def test_completed_task_carries_timestamps() -> None:
    task = parse_task(completed(completed_at=1703884900, expires_at="1703971300"))
    assert (task.completed_at, task.expires_at) == (1703884900, 1703971300)


def test_failed_task_carries_provider_message_and_code() -> None:
    task = parse_task({"id": "t", "status": "failed", "error": {"message": "Content policy", "code": 1301}})
    assert (task.error_message, task.error_code) == ("Content policy", "1301")


def test_failed_task_with_string_error_carries_message() -> None:
    task = parse_task({"id": "t", "status": "failed", "error": "Generation timed out upstream"})
    assert (task.error_message, task.error_code) == ("Generation timed out upstream", None)


def test_raise_if_failed_raises_task_failed_error_with_the_reason() -> None:
    task = parse_task({"id": "t", "status": "failed", "error": {"message": "Nope", "code": "policy"}})
    with pytest.raises(TaskFailedError) as info:
        task.raise_if_failed()
    assert (info.value.provider_message, info.value.code) == ("Nope", "policy")


@pytest.mark.parametrize("body", [None, [], "task", {"status": "queued"}, {"id": ""}, {"id": None}])
def test_body_without_a_task_id_is_invalid(body: object) -> None:
    with pytest.raises(InvalidResponseError):
        parse_task(body)


# --------------------------------------------------------------------------- error bodies


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"error": {"message": "Invalid size", "type": "invalid_request_error", "code": "x"}},
            "Invalid size",
        ),
        ({"success": False, "message": "File Too Large"}, "File Too Large"),
        ({"error": "plain error string"}, "plain error string"),
        ({"message": "plain message string"}, "plain message string"),
        ({"error": {"type": "insufficient_quota"}}, "insufficient_quota"),
        ({"error": {}}, "Bad Request"),
        ({}, "Bad Request"),
        (None, "Bad Request"),
        ([1, 2], "Bad Request"),
    ],
)
def test_error_message_is_extracted_from_every_shape(body: object, expected: str) -> None:
    assert extract_error_message(body, "Bad Request") == expected


def test_error_message_is_single_line_and_truncated() -> None:
    message = extract_error_message({"error": {"message": "line one\nline two " + "x" * 1000}})
    assert ("\n" not in message, len(message) <= 300) == (True, True)


def test_error_message_scrubs_bearer_tokens() -> None:
    message = extract_error_message({"message": "bad header Bearer abc.def.ghi given"})
    assert "abc.def.ghi" not in message


def test_error_code_is_read_from_the_error_object() -> None:
    assert extract_error_code({"error": {"message": "m", "code": "rate_limit"}}) == "rate_limit"


# --------------------------------------------------------------------------- Retry-After


@pytest.mark.parametrize(
    ("value", "expected"), [("3", 3.0), ("1.5", 1.5), ("-4", 0.0), ("", None), (None, None), ("soon", None)]
)
def test_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_retry_after_http_date_is_seconds_from_now() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    header = format_datetime(datetime(2025, 1, 1, 12, 0, 30, tzinfo=UTC), usegmt=True)
    assert parse_retry_after(header, now=now.timestamp()) == pytest.approx(30.0)
