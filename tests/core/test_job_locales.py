"""A job keeps the languages of its messages (migration 11), and the texts a job's messages are
made of are translatable while reading exactly as before in English."""

from __future__ import annotations

import dataclasses

import pytest

from bot import toapis
from bot.i18n import Joined, Text
from bot.jobs.records import JobOrigin, JobStore
from bot.jobs.runner import JobFailedError, duration_words, failure_message
from bot.references import ReferenceRejectedError, ReferenceSource, check_sources
from bot.schema import MIGRATIONS, _m011_job_locales
from tests.core.older_databases import as_before, asked, reopened

ASKED = asked(model="doubao-seedream-5-0", locale="ja", guild_locale="fr")


async def test_a_job_keeps_the_languages_it_was_asked_in(store):
    created = await JobStore(store).create(ASKED)
    stored = await JobStore(store).get(created.id)
    assert stored is not None and (stored.locale, stored.guild_locale) == ("ja", "fr")


async def test_jobs_from_before_the_locale_columns_read_english_and_new_ones_keep_theirs(store, database_url):
    job = await JobStore(store).create(ASKED)
    await as_before(store, _m011_job_locales, columns=("locale", "guild_locale"))
    async with reopened(database_url) as again:
        assert await again.migrate() == len(MIGRATIONS)
        migrated = await JobStore(again).get(job.id)
        created = await JobStore(again).create(dataclasses.replace(ASKED, locale="pt-BR", guild_locale=None))
        fresh = await JobStore(again).get(created.id)
    assert migrated is not None and fresh is not None
    assert ((migrated.locale, migrated.guild_locale), (fresh.locale, fresh.guild_locale)) == (
        (None, None),
        ("pt-BR", None),
    )


def test_new_job_records_the_languages_of_where_it_was_asked():
    from bot.catalog import builtin_catalog
    from bot.jobs.request import RequestOptions, build_request, new_job

    request = build_request(
        builtin_catalog(), RequestOptions(prompt="a fox"), default_model="doubao-seedream-5-0", requester_id=3
    )
    origin = JobOrigin(
        guild_id=1,
        channel_id=2,
        user_id=3,
        application_id=4,
        interaction_id=5,
        interaction_token=None,
        token_expires_at=None,
        upload_limit=1,
        locale="ko",
        guild_locale="de",
    )
    job = new_job(request, origin)
    assert (job.locale, job.guild_locale) == ("ko", "de")


# --------------------------------------------------------------------------- texts of a job


def test_a_refusal_by_the_image_service_is_a_text_that_reads_as_before_in_english():
    refused = failure_message(toapis.TaskFailedError(provider_message="too  spicy\n"))
    unexplained = failure_message(toapis.BadRequestError())
    assert (isinstance(refused, Text), str(refused), str(unexplained)) == (
        True,
        "The image service could not make this image: too spicy",
        "The image service refused this request. Try a different prompt.",
    )


def test_the_image_services_errors_carry_their_safe_message_as_a_text():
    error = toapis.DownloadTooLargeError(limit=25 * 1024 * 1024)
    assert (isinstance(error.text, Text), str(error), str(toapis.ServerError())) == (
        True,
        "The image file is larger than the download limit of 25 MB.",
        "The image service had a server error.",
    )


def test_a_failed_jobs_error_keeps_its_text_for_the_member_and_its_english_for_the_record():
    text = duration_words(125)
    error = JobFailedError(text)
    assert (error.text is text, str(error), str(duration_words(1)), str(duration_words(45))) == (
        True,
        "2 minutes",
        "1 second",
        "45 seconds",
    )


def test_reference_refusals_are_texts_naming_every_file_one_line_each():
    sources = [
        ReferenceSource(filename="notes.txt", url="https://cdn/a", content_type="text/plain"),
        ReferenceSource(
            filename="tiny.png", url="https://cdn/b", content_type="image/png", width=10, height=10
        ),
    ]
    with pytest.raises(ReferenceRejectedError) as refused:
        check_sources(sources, n=1, max_references=10, model_name="Seedream 5.0")
    refusal = refused.value
    assert (str(refusal).splitlines(), refusal.filenames, isinstance(refusal.text, Joined)) == (
        [
            "`notes.txt` is not an image — attach a JPEG, PNG, WebP or GIF.",
            "`tiny.png` is 10×10 pixels; reference images must be more than 14 pixels wide and tall "
            "— use a larger image.",
        ],
        ("notes.txt", "tiny.png"),
        True,  # several files: their lines joined, each a text of its own
    )
