"""The bot as its own process (`python -m bot`, started by the tests' launcher), its log, and what
/proc says about it."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.process_launcher import SHUTDOWN_LIMIT, spawn_bot_process

METRICS = re.compile(r"\bmetrics((?:\s+\w+=\S+)+)\s*$")


def proc_status(pid: int) -> dict[str, int]:
    """The ``Vm*`` lines of /proc/<pid>/status in kB (empty when the process is gone)."""
    values: dict[str, int] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return values
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key.startswith("Vm") and rest.strip().endswith("kB"):
            values[key] = int(rest.split()[0])
    return values


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of the process so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0: write 5 to clear_refs); True if it worked."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def parse_metrics(line: str) -> dict[str, float] | None:
    """``metrics loop_lag_p99_ms=12.3 rss_mb=…`` → its numbers (None for other lines)."""
    match = METRICS.search(line)
    if match is None:
        return None
    values: dict[str, float] = {}
    for pair in match.group(1).split():
        key, _, raw = pair.partition("=")
        with contextlib.suppress(ValueError):
            values[key] = float(raw)
    return values or None


@dataclass
class StopResult:
    """How the process ended after SIGTERM."""

    exit_code: int | None
    seconds: float
    in_time: bool  # exited within SHUTDOWN_LIMIT on its own


class BotProcess:
    """`python -m bot` configured only by its environment; output kept (tail) and scanned."""

    def __init__(self, proc: asyncio.subprocess.Process, log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path
        self.tail: collections.deque[str] = collections.deque(maxlen=400)
        self.metrics: dict[str, float] | None = None
        self.metrics_lines = 0
        self.warnings = 0
        self._log = log_path.open("w", encoding="utf-8")
        self._reader = asyncio.create_task(self._read(), name="bot-log-reader")

    @classmethod
    async def start(cls, env: dict[str, str], cwd: Path) -> BotProcess:
        # One line of the log may be long (a traceback, a metrics line): read up to 1 MB as a line.
        proc = await spawn_bot_process(env, cwd=cwd, stderr=subprocess.STDOUT, limit=1024 * 1024)
        return cls(proc, cwd / "bot.log")

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc.returncode is None

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while True:
            try:
                raw = await self.proc.stdout.readline()
            except ValueError:  # a line longer than the limit: take what there is
                raw = await self.proc.stdout.read(64 * 1024)
            if not raw:
                break
            line = raw.decode(errors="replace").rstrip("\n")
            self._log.write(line + "\n")
            self.tail.append(line)
            if " WARNING " in line or " ERROR " in line:
                self.warnings += 1
            metrics = parse_metrics(line)
            if metrics is not None:
                self.metrics = metrics
                self.metrics_lines += 1
        self._log.flush()

    def last_lines(self, count: int = 40) -> str:
        return "\n".join(list(self.tail)[-count:])

    async def stop(self, within: float = SHUTDOWN_LIMIT) -> StopResult:
        """SIGTERM, then wait up to ``within`` seconds; SIGKILL if it is still there."""
        started = time.monotonic()
        if self.running:
            self.proc.send_signal(signal.SIGTERM)
        in_time = True
        try:
            await asyncio.wait_for(self.proc.wait(), within)
        except TimeoutError:
            in_time = False
            self.proc.kill()
            await asyncio.wait_for(self.proc.wait(), 5)
        await self.close()
        return StopResult(self.proc.returncode, time.monotonic() - started, in_time)

    async def close(self) -> None:
        """Kill if still running; finish reading the log."""
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 5)
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(self._reader, 5)
        self._log.close()
