"""Child processes that are restarted when they die and stopped in order on request."""

from __future__ import annotations

import asyncio
import ctypes
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger("ticketing.dev")


def die_with_parent() -> None:
    """In a child before exec: get SIGTERM when the parent dies, even by ``kill -9``."""
    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


@dataclass
class Child:
    """One supervised process: restarted with backoff when it dies, stopped on request."""

    name: str
    argv: list[str]
    env: Mapping[str, str]
    service: str = ""  # the service it is a replica of, if any
    after_start: Callable[[], Awaitable[None]] | None = None
    process: asyncio.subprocess.Process | None = None
    stopping: bool = field(default=False)

    async def supervise(self) -> None:
        delay = 1.0
        while not self.stopping:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv,
                env=dict(self.env),
                stdout=sys.stderr.fileno(),  # stdout carries only the banner; logs go to stderr
                start_new_session=True,  # Ctrl-C reaches the supervisor, which stops us in order
                preexec_fn=die_with_parent,
            )
            log.info("started", child=self.name, pid=self.process.pid)
            if self.after_start is not None:
                try:
                    await self.after_start()
                except Exception as error:  # noqa: BLE001 - logged; the child is watched anyway
                    log.error("after-start step failed", child=self.name, error=repr(error))
            code = await self.process.wait()
            if self.is_stopping():
                return
            log.error("child died, restarting", child=self.name, exit_code=code, retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    def is_stopping(self) -> bool:
        # A call, not the attribute: mypy narrows ``self.stopping`` to False after the loop's
        # test and would take the check after the await for unreachable.
        return self.stopping

    async def stop(self, grace: float = 10.0) -> None:
        self.stopping = True
        process = self.process
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            log.warning("child did not stop in time, killing it", child=self.name)
            process.kill()
            await process.wait()
