"""`instore` sub-commands (the push hub and sink, the worker, the API) as child processes, each
in its own process group, for the benchmarks and the tests; stopping kills the group. A harness,
not a part: it lives with the benchmarks (tests import it from here too). Also the CPU time and
memory of an embedded stack's services, as the benchmarks report them."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from instore.embedded import port_open

if TYPE_CHECKING:
    from instore.embedded import Stack


@dataclass
class Child:
    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    cwd: Path | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> Child:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        out = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "instore", *self.args],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.cwd,
            start_new_session=True,
        )
        out.close()
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=15)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def wait_http(
    url: str, child: Child | None = None, timeout_s: float = 30.0, verify: Any = True
) -> None:
    """Wait until ``url`` answers (``verify``: httpx's, e.g. the CA file of a test's TLS)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child is not None and not child.alive:
            msg = f"{child.name} exited while starting:\n{child.tail()}"
            raise RuntimeError(msg)
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1, verify=verify).status_code < 500:
                return
        time.sleep(0.1)
    msg = f"{url} did not answer within {timeout_s:.0f}s"
    raise RuntimeError(msg)


def wait_port(host: str, port: int, child: Child | None = None, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child is not None and not child.alive:
            msg = f"{child.name} exited while starting:\n{child.tail()}"
            raise RuntimeError(msg)
        if port_open(host, port):
            return
        time.sleep(0.1)
    msg = f"nothing listens on {host}:{port} after {timeout_s:.0f}s"
    raise RuntimeError(msg)


# --- the embedded stack's services (psutil) ----------------------------------------------

def service_processes(stack: Stack, prefix: str) -> Iterator[Any]:
    """psutil handles of the stack's running services whose name starts with ``prefix``."""
    import psutil  # noqa: PLC0415

    for name, r in stack.services.items():
        if name.startswith(prefix):
            with contextlib.suppress(psutil.Error):
                yield psutil.Process(r.proc.pid)


def rss_mb(stack: Stack, prefix: str = "worker") -> float:
    """The largest resident memory of the services named ``prefix*`` (MiB)."""
    import psutil  # noqa: PLC0415

    rss = 0.0
    for proc in service_processes(stack, prefix):
        with contextlib.suppress(psutil.Error):
            rss = max(rss, proc.memory_info().rss / 2**20)
    return round(rss, 1)


def cpu_s(stack: Stack, prefix: str) -> float:
    """CPU seconds (user + system) used so far by the services named ``prefix*``."""
    import psutil  # noqa: PLC0415

    total = 0.0
    for proc in service_processes(stack, prefix):
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total
