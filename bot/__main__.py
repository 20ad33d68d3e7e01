"""Entry point: `python -m bot` runs the bot; `python -m bot --check` checks the setup and exits.

This is the composition root: the only place that reads `.env`, and the only
`bot` module that reaches the Discord layer (`cogs.app`). Configuration
problems end the process with one line naming the setting — no traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from dotenv import find_dotenv, load_dotenv

from bot.catalog import Catalog, CatalogError, load_catalog
from bot.config import ConfigError, Settings, load_operator_blocklist
from bot.logsetup import configure_logging
from bot.metrics import keep_large_buffers_out_of_the_heap


def load(env: dict[str, str]) -> tuple[Settings, Catalog]:
    """Settings and model catalog, validated together (DEFAULT_MODEL must be in the catalog)."""
    settings = Settings.from_env(env)
    catalog = load_catalog(settings.model_catalog_file)
    load_operator_blocklist(settings.operator_blocklist_file)  # a bad file stops start-up here
    if catalog.find(settings.default_model) is None:
        known = ", ".join(catalog.ids)
        raise ConfigError(
            f"DEFAULT_MODEL {settings.default_model!r} is not in the model catalog (known: {known}) "
            "(see .env.example)"
        )
    return settings, catalog


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot", description="Seedream image bot for Discord")
    parser.add_argument(
        "--check",
        action="store_true",
        help="validate settings, test the ToAPIs key, log in to Discord, print both install links, and exit",
    )
    args = parser.parse_args(argv)

    load_dotenv(find_dotenv(usecwd=True))  # the .env of the directory the bot is started in
    try:
        settings, catalog = load(dict(os.environ))
    except (ConfigError, CatalogError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    configure_logging(settings)  # secrets never reach the log, at any level

    # The entry point is where the core meets the Discord layer, imported only when needed.
    from cogs.app import run_bot, run_check  # noqa: TID251

    keep_large_buffers_out_of_the_heap()

    try:
        return asyncio.run(run_check(settings, catalog) if args.check else run_bot(settings, catalog))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
