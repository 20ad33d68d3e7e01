"""`python -m bot` as its own process, configured only by its environment, like a deployment.

One launcher for everything that starts the real bot process: the whole-process tests
(`tests/process/`, through the rig) and the benchmark (`bench/process.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHUTDOWN_LIMIT = 10.0  # what Procfile hosts allow between SIGTERM and SIGKILL
STREAM_LIMIT = 64 * 1024  # asyncio's default line limit for the output stream


async def spawn_bot_process(
    env: dict[str, str],
    *args: str,
    cwd: Path,
    stderr: int = subprocess.PIPE,
    limit: int = STREAM_LIMIT,
) -> asyncio.subprocess.Process:
    """`python -m bot ARGS` as its own process, configured only by `env` (like a deployment).

    Started without blocking, so the caller's event loop keeps serving the fakes meanwhile.
    `limit` bounds one line read from its output.
    """
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        cwd=cwd,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT), **env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr,
        limit=limit,
    )


class BotProcess:
    """`python -m bot` as its own process, its output (stdout and stderr) kept for the test's messages."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.output = bytearray()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, env: dict[str, str], cwd: Path) -> BotProcess:
        proc = await spawn_bot_process(env, cwd=cwd, stderr=subprocess.STDOUT)
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while chunk := await self.proc.stdout.read(4096):
            self.output.extend(chunk)

    async def stop(self, sig: signal.Signals, within: float = SHUTDOWN_LIMIT) -> int:
        """Send `sig`; return the exit code, failing if the process outlives `within` seconds."""
        self.proc.send_signal(sig)
        try:
            code = await asyncio.wait_for(self.proc.wait(), within)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError(
                f"the bot did not exit within {within}s of {sig.name}:\n{self.log}"
            ) from None
        await self._reader
        return code

    @property
    def log(self) -> str:
        return self.output.decode(errors="replace")[-4000:]

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
