"""Job details kept only as long as needed: deleted after `JOB_RETENTION_DAYS`, or when asked.

A finished job's record holds what a member typed and who they are: the prompt, the links to
their reference images, their member id, the interaction that asked, and the names the model
gave a layered image's parts. Forgetting a job blanks exactly those and stamps `forgotten_at`;
what usage reports count stays — server, channel, model, ratio, resolution, images asked and
delivered, how many references, outcome and times — so reports and their cost estimates for
past periods do not change.

Only finished jobs are forgotten. A job still running needs its prompt and its member (to
deliver, refund or retry), so it keeps them until it ends; the member is told so and can ask
again. Quota counters are separate rows that expire by themselves at the end of their day or
month, and a finished job has already settled its quota exactly once, so forgetting never
refunds, charges or resets anything.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.i18n import Readable, Text, _, _n, join
from bot.jobs.records import FINAL_STATES
from bot.schema import jobs_table
from bot.store import Store

log = logging.getLogger(__name__)

DAY = 86400.0
# Rows forgotten per transaction: a first sweep over a large, old database never holds a long lock.
BATCH = 500
# The member id a forgotten job shows (the column is required; no Discord id is 0).
NO_MEMBER = 0

_FINAL = [state.value for state in FINAL_STATES]


@dataclass(frozen=True)
class ForgetResult:
    """What a member's (or an admin's) request to forget did."""

    forgotten: int  # finished jobs whose details were deleted now
    unfinished: int  # jobs still running, which keep their details until they end


def _scrubbed(delivered: str | None) -> str | None:
    """The `delivered` JSON without the layers' names and descriptions (the model's words about the
    member's image); file names, sizes and message ids stay, so delivered images are still counted."""
    if not delivered:
        return delivered
    data = json.loads(delivered)
    for image in data.get("images", ()):
        layer = image.get("layer")
        if isinstance(layer, dict):
            layer["name"] = layer["description"] = None
    return json.dumps(data)


class JobRetention:
    """Deletes the personal details of finished jobs: old ones on a timer, a member's on request."""

    def __init__(self, store: Store, *, retention_days: int | None, clock: Callable[[], float] = time.time):
        self._store = store
        self.retention_days = retention_days  # None: kept until a member or admin asks
        self._clock = clock

    async def forget_expired(self) -> int:
        """Forget every finished job created more than `retention_days` ago; returns how many."""
        if self.retention_days is None:
            return 0
        cutoff = self._clock() - self.retention_days * DAY
        forgotten = await self._forget(jobs_table.c.created_at < cutoff, what="expired jobs")
        if forgotten:
            days = self.retention_days
            log.info("retention: forgot the details of %d job(s) older than %d day(s)", forgotten, days)
        return forgotten

    async def forget_member(self, user_id: int, *, guild_id: int | None = None) -> ForgetResult:
        """Forget a member's finished jobs: everywhere (their own request) or in one server (an admin's)."""
        where = [jobs_table.c.user_id == user_id]
        if guild_id is not None:
            where.append(jobs_table.c.guild_id == guild_id)
        forgotten = await self._forget(sa.and_(*where), what=f"jobs of user {user_id}")
        async with self._store.engine.connect() as conn:
            unfinished = (
                await conn.execute(
                    sa.select(sa.func.count())
                    .select_from(jobs_table)
                    .where(*where, jobs_table.c.state.not_in(_FINAL))
                )
            ).scalar_one()
        return ForgetResult(forgotten=forgotten, unfinished=int(unfinished))

    async def _forget(self, which: sa.ColumnElement[bool], *, what: str) -> int:
        """Forget the finished, not yet forgotten jobs `which` selects, a batch per transaction."""
        total = 0
        while True:
            done = await self._store.transact(
                lambda conn: self._forget_batch(conn, which), what=f"forgetting {what}"
            )
            total += done
            if done < BATCH:
                return total

    async def _forget_batch(self, conn: AsyncConnection, which: sa.ColumnElement[bool]) -> int:
        rows = (
            await conn.execute(
                sa.select(jobs_table.c.id, jobs_table.c.delivered)
                .where(which, jobs_table.c.state.in_(_FINAL), jobs_table.c.forgotten_at.is_(None))
                .order_by(jobs_table.c.id)
                .limit(BATCH)
            )
        ).all()
        if not rows:
            return 0
        now = self._clock()
        blank: dict[str, Any] = {
            "prompt": "",
            "reference_urls": "[]",
            "result_urls": None,
            "result_layers": None,
            "user_id": NO_MEMBER,
            "interaction_id": None,
            "interaction_token": None,
            "token_expires_at": None,
            "quota_keys": "[]",  # counter keys name the member; the quota was settled when it ended
            "active_keys": "[]",
            "forgotten_at": now,
        }
        statement = (
            jobs_table.update()
            .where(jobs_table.c.id == sa.bindparam("job_id"), jobs_table.c.forgotten_at.is_(None))
            .values(**blank, delivered=sa.bindparam("scrubbed"))
        )
        await conn.execute(statement, [{"job_id": r.id, "scrubbed": _scrubbed(r.delivered)} for r in rows])
        return len(rows)


# --------------------------------------------------------------------------- what members are told


def forget_confirmation(retention_days: int | None) -> Text:
    """What /imagine-forget asks before deleting anything."""
    kept = (
        _n(
            "The bot deletes them by itself {count} day after each job.",
            "The bot deletes them by itself {count} days after each job.",
            retention_days,
        )
        if retention_days is not None
        else _("This bot keeps them until you ask.")
    )
    return _(
        "**Delete your image history?**\n"
        "This deletes the prompts, reference image links and your member id from every finished image "
        "job of yours the bot has kept, in every server and in direct messages. "
        "{kept}\n"
        "Images already posted stay where they are: to remove one, use its **Delete** button *before* "
        "this (afterwards only moderators can). Server usage counts are kept, without your name. "
        "This cannot be undone.",
        kept=kept,
    )


FORGET_CANCELLED = _("Nothing was deleted.")
# The database did not answer (past its retries): jobs are forgotten a batch per transaction, so
# what was deleted stays deleted, and pressing the button again finishes the rest.
FORGET_FAILED = _(
    "The bot could not finish deleting your history: its database did not answer. What was already "
    "deleted stays deleted; press **Delete my history** again in a minute."
)


def forget_done(result: ForgetResult, *, member: str | None = None) -> Readable:
    """The answer once a forget ran: how many jobs, and the running ones that keep their details for now.

    `member` is None for a member's own request (everywhere), else how an admin's answer names the
    member (a mention; their jobs in this server).
    """
    if result.forgotten == 0 and result.unfinished == 0:
        if member is None:
            return _("The bot has no job history of yours to delete.")
        return _("{member} has no job history in this server to delete.", member=member)
    done = (
        _n(
            "Deleted the details of your {count} finished job.",
            "Deleted the details of your {count} finished jobs.",
            result.forgotten,
        )
        if member is None
        else _n(
            "Deleted the details of {member}'s {count} finished job in this server.",
            "Deleted the details of {member}'s {count} finished jobs in this server.",
            result.forgotten,
            member=member,
        )
    )
    if not result.unfinished:
        return done
    running = _n(
        "{count} job still running keeps its details until it ends (the bot needs them to deliver "
        "the images or give the quota back): run this again once it is done.",
        "{count} jobs still running keep their details until they end (the bot needs them to "
        "deliver the images or give the quota back): run this again once they are done.",
        result.unfinished,
    )
    return join([done, running], " ")
