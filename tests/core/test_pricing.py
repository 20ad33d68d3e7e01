"""The catalog's optional `price_per_image` and the usage report's cost estimate made from it."""

from __future__ import annotations

import csv
import io

import pytest

from bot.catalog import CatalogError, ModelSpec, builtin_catalog, load_catalog
from bot.guild_settings import GuildSettings
from bot.jobs.records import JobState
from bot.usage import (
    Price,
    billed_images,
    estimate_cost,
    jobs_csv,
    period_of,
    prices_of,
    summarize,
    usage_text,
)
from tests.core.test_usage import NOW, job


def _catalog(tmp_path, text: str):
    path = tmp_path / "models.toml"
    path.write_text(text, encoding="utf-8")
    return load_catalog(path)


def test_a_price_is_read_from_the_operators_file(tmp_path):
    catalog = _catalog(
        tmp_path,
        '[models."doubao-seedream-5-0"]\nprice_per_image = 0.035\n'
        '[models."doubao-seedream-4-5"]\nprice_per_image = 0\n',
    )
    assert (
        catalog.get("doubao-seedream-5-0").price_per_image,
        catalog.get("doubao-seedream-4-5").price_per_image,
        catalog.get("doubao-seedream-4-0").price_per_image,
        prices_of(catalog),
    ) == (
        0.035,
        0.0,
        None,
        {"doubao-seedream-4-5": Price(0.0), "doubao-seedream-5-0": Price(0.035)},
    )


def test_built_in_models_have_no_price():
    assert prices_of(builtin_catalog()) == {}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"0.03"', "price_per_image must be a number of USD (e.g. 0.035)"),
        ("true", "price_per_image must be a number of USD (e.g. 0.035)"),
        ("-0.01", "price_per_image must be a number of USD, 0 or more (got -0.01)"),
        ("inf", "price_per_image must be a number of USD, 0 or more (got inf)"),
        ("nan", "price_per_image must be a number of USD, 0 or more (got nan)"),
    ],
)
def test_a_price_that_is_not_a_usd_amount_stops_start_up_naming_the_model(tmp_path, value, expected):
    with pytest.raises(CatalogError) as refused:
        _catalog(tmp_path, f'[models."doubao-seedream-5-0"]\nprice_per_image = {value}\n')
    assert f'model "doubao-seedream-5-0": {expected}' in str(refused.value)


def test_model_spec_refuses_a_negative_price():
    with pytest.raises(ValueError, match="price_per_image must be a number of USD, 0 or more"):
        ModelSpec(id="x", display_name="X", price_per_image=-1)


def test_the_estimate_counts_the_images_jobs_count_times_their_models_price():
    prices = {"doubao-seedream-5-0": Price(0.04)}
    jobs = [
        job(1, n=2),
        job(2, n=3, delivered_count=1),
        job(3, n=4, state=JobState.FAILED),
        job(4, n=2, state=JobState.RUNNING),  # reserved while running
        job(5, n=1, model="doubao-seedream-4-5"),
    ]
    cost = estimate_cost(jobs, prices)
    assert cost is not None
    assert (round(cost.usd, 6), cost.unpriced_images, cost.unpriced_models) == (
        0.2,
        1,
        ("doubao-seedream-4-5",),
    )
    text = usage_text(
        period_of("today", NOW), summarize(jobs), today=6, month=6, settings=GuildSettings(), cost=cost
    )
    assert (
        "**Estimated cost today:** $0.20 — partial: 1 image of models without a price "
        "(doubao-seedream-4-5) not counted"
    ) in str(text).splitlines()


def test_a_fully_priced_period_says_no_more_than_its_cost():
    cost = estimate_cost([job(1, n=3)], {"doubao-seedream-5-0": Price(0.035)})
    text = usage_text(
        period_of("month", NOW),
        summarize([job(1, n=3)]),
        today=3,
        month=3,
        settings=GuildSettings(),
        cost=cost,
    )
    assert "**Estimated cost this month:** $0.11" in str(text).splitlines()


def test_without_any_price_there_is_no_estimate():
    assert estimate_cost([job(1)], {}) is None


def test_references_after_the_first_are_billed_when_the_model_says_so():
    with_references = job(1, n=2, reference_urls=("https://a", "https://b", "https://c"))
    assert (
        billed_images(with_references, Price(0.05, bills_extra_references=True)),
        billed_images(with_references, Price(0.05)),
        billed_images(
            job(2, state=JobState.FAILED, reference_urls=("https://a", "https://b")), Price(1, True)
        ),
    ) == (4, 2, 0)


def test_the_csv_gives_each_jobs_cost_and_leaves_unpriced_models_empty():
    prices = {"doubao-seedream-5-0": Price(0.035)}
    data = jobs_csv([job(1, n=2), job(2, model="doubao-seedream-4-5")], prices)
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    assert [r["cost_usd"] for r in rows] == ["0.0700", ""]
