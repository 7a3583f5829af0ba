"""Run the ``bot`` command as real processes, the way operators run it.

    async with BotProcess("run", cwd=tmp_path, env=clean_env(DISCORD_BOT_TOKEN=...)) as bot:
        await bot.wait_for_line("ready:")
        ...
        assert await bot.stop() == 0  # SIGTERM, then the exit code

- :func:`run_bot`: run a ``bot`` command to the end; returns (code, stdout, stderr).
- :class:`BotProcess`: a ``bot`` process that keeps running while the test talks to
  it; its output is read as it comes (so a chatty log never blocks it), and the test
  can wait for a line, stop it with SIGTERM or kill it with SIGKILL.
- :func:`clean_env`: this environment without Discord/Hark settings, plus ``extra``.
- :func:`fake_distribution`: an installed distribution on a ``PYTHONPATH`` folder, so
  a plugin written in the test is found through a real entry point.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

BOT = [sys.executable, "-m", "hark.cli"]
# A DEBUG log line can hold a whole gateway payload: read lines up to this long.
_LINE_LIMIT = 1 << 24


def clean_env(**extra: str) -> dict[str, str]:
    """``os.environ`` without ``DISCORD_*``, ``HARK_*`` and ``BOT_*``, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "HARK_", "BOT_"))}
    env.update(extra)
    return env


def fake_distribution(
    root: Path, name: str, entry_points: Mapping[str, str], modules: Mapping[str, str]
) -> None:
    """A minimal installed distribution in ``root`` (put it on ``PYTHONPATH``): its
    ``hark`` entry points, and the modules they name (source, dedented)."""
    dist = root / f"{name}-0.3.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.3.0\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (dist / "entry_points.txt").write_text(f"[hark]\n{lines}\n")
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))


async def run_bot(
    *args: str, cwd: Path, env: Mapping[str, str], timeout: float = 60
) -> tuple[int, str, str]:
    """Run ``bot ARGS...`` to the end: (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *BOT,
        *args,
        cwd=cwd,
        env=dict(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


class BotProcess:
    """A ``bot ARGS...`` process (``start()`` or ``async with``); leaving the block
    kills it if it still runs."""

    def __init__(
        self, *args: str, cwd: Path, env: Mapping[str, str], name: str | None = None
    ) -> None:
        self.args = args
        self.cwd = cwd
        self.env = dict(env)
        self.name = name or " ".join(args)
        self.proc: asyncio.subprocess.Process | None = None
        self._lines: list[str] = []
        self._grew = asyncio.Condition()
        self._readers: list[asyncio.Task[None]] = []

    async def start(self) -> BotProcess:
        self._lines.clear()
        self.proc = await asyncio.create_subprocess_exec(
            *BOT,
            *self.args,
            cwd=self.cwd,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=_LINE_LIMIT,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            asyncio.create_task(self._read(self.proc.stdout)),
            asyncio.create_task(self._read(self.proc.stderr)),
        ]
        return self

    async def _read(self, stream: asyncio.StreamReader) -> None:
        async for raw in stream:
            line = raw.decode(errors="replace").rstrip("\n")
            async with self._grew:
                self._lines.append(line)
                self._grew.notify_all()
        async with self._grew:  # end of output: wake waiters so they can fail at once
            self._grew.notify_all()

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    @property
    def output(self) -> str:
        """Everything it printed so far (stdout and stderr, as the lines came)."""
        return "\n".join(self._lines)

    def lines(self, containing: str = "") -> list[str]:
        return [line for line in self._lines if containing in line]

    async def wait_for_line(self, text: str, *, timeout: float = 30, count: int = 1) -> str:
        """Wait until ``count`` lines of its output contain ``text``; returns the last
        of them. Fails at once if the process ends first."""

        def found() -> list[str]:
            return [line for line in self._lines if text in line]

        async def wait() -> str:
            async with self._grew:
                while len(found()) < count:
                    if self.proc is None or all(r.done() for r in self._readers):
                        raise AssertionError(
                            f"{self.name} ended before printing {text!r}:\n{self.output[-3000:]}"
                        )
                    await self._grew.wait()
                return found()[count - 1]

        try:
            return await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"{self.name} printed no {text!r} within {timeout}s:\n{self.output[-3000:]}"
            ) from None

    async def wait(self, timeout: float = 20) -> int:
        """Wait for it to end; its exit code."""
        assert self.proc is not None
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        await asyncio.gather(*self._readers, return_exceptions=True)
        return code

    async def stop(self, timeout: float = 20) -> int:
        """SIGTERM (a clean shutdown), then wait; its exit code."""
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
        return await self.wait(timeout)

    async def kill(self) -> None:
        """SIGKILL: no cleanup at all, like a crash or an OOM kill."""
        if self.running:
            assert self.proc is not None
            self.proc.kill()
        if self.proc is not None:
            await self.wait()

    async def __aenter__(self) -> BotProcess:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with contextlib.suppress(ProcessLookupError):
            await self.kill()
