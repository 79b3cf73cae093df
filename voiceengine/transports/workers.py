"""``serve --workers N``: N processes on one port, so one machine uses all its cores.

Each worker binds the port with ``SO_REUSEPORT`` and the kernel spreads new connections
over them (a call stays on the worker that accepted it: calls are independent, so this is
all the coordination needed). The supervisor holds a bound, non-listening socket on the
port for the whole run, so ``--port 0`` resolves to one port for every worker and no other
program can take it between restarts.

Metrics: the supervisor points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory (unless
set already) before starting the workers; ``/metrics`` on any worker reports the sum over
all of them (see :mod:`voiceengine.transports.metrics`).

Signals: SIGTERM or SIGINT to the supervisor is passed to every worker, which drains (see
:mod:`voiceengine.transports.server`); the supervisor waits for them (``drain_timeout_s``
plus a grace period, then SIGKILL) and exits. A worker that dies on its own is restarted
after ``restart_delay_s``.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import Any, Callable

from ..exceptions import ConfigurationError
from .calls import CallHost
from .metrics_dir import MULTIPROC_ENV, multiprocess_dir
from .server import ServeConfig, VoiceServer, serve

__all__ = ["serve_workers", "reserve_port"]

log = logging.getLogger("voiceengine.transports.workers")

HostBuilder = Callable[[], CallHost]

def reserve_port(host: str, port: int) -> socket.socket:
    """A bound, non-listening SO_REUSEPORT socket: it holds the port for the workers."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise ConfigurationError("--workers needs SO_REUSEPORT (Linux, macOS, BSD)")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def _worker_main(build_host: HostBuilder, config: ServeConfig, ready: Connection, log_level: int) -> None:
    """One worker process: serve on the shared port until SIGTERM, then drain."""
    logging.basicConfig(level=log_level, format=f"%(asctime)s [worker {os.getpid()}] %(name)s %(levelname)s "
                                                "%(message)s")

    def announce(server: VoiceServer) -> None:
        try:
            ready.send(os.getpid())
        except OSError:  # a restarted worker: the supervisor does not wait for it
            pass
        ready.close()

    asyncio.run(serve(build_host(), config, ready=announce))


def serve_workers(build_host: HostBuilder, config: ServeConfig, workers: int, *,
                  ready: Callable[[int, list[int]], None] | None = None, restart_delay_s: float = 1.0,
                  start_timeout_s: float = 60.0, log_level: int = logging.INFO) -> int:
    """Run ``workers`` processes serving ``config`` until SIGTERM/SIGINT; returns the exit status.

    ``build_host`` is called in each worker to make its :class:`CallHost` (it must be
    picklable: a module-level function or a ``functools.partial`` of one). ``ready(port,
    pids)`` is called once every worker listens.
    """
    if workers < 1:
        raise ConfigurationError("workers must be >= 1")
    own_dir = None
    if config.metrics and not os.environ.get(MULTIPROC_ENV):
        own_dir = tempfile.mkdtemp(prefix="voiceengine-metrics-")
        os.environ[MULTIPROC_ENV] = own_dir
    holder = reserve_port(config.host, config.port)
    port = holder.getsockname()[1]
    worker_config = replace(config, port=port, reuse_port=True)
    context = multiprocessing.get_context("spawn")
    stopping = False

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    procs: list[Any] = []

    def start_one() -> Any:
        parent_end, child_end = context.Pipe(duplex=False)
        proc = context.Process(target=_worker_main, args=(build_host, worker_config, child_end, log_level),
                               name="voiceengine-worker", daemon=False)
        proc.start()
        child_end.close()
        return proc, parent_end

    try:
        pending = [start_one() for _ in range(workers)]
        deadline = time.monotonic() + start_timeout_s
        for proc, conn in pending:
            while not conn.poll(0.1):
                if not proc.is_alive() or time.monotonic() > deadline or stopping:
                    raise ConfigurationError(f"worker {proc.pid} did not start (exit code {proc.exitcode})")
            conn.recv()
            conn.close()
            procs.append(proc)
        if ready is not None:
            ready(port, [p.pid for p in procs])
        while not stopping:
            time.sleep(0.1)
            for index, proc in enumerate(procs):
                if not proc.is_alive() and not stopping:
                    log.warning("worker %d exited with %s; restarting in %.1f s", proc.pid, proc.exitcode,
                                restart_delay_s)
                    _mark_dead(proc.pid)
                    time.sleep(restart_delay_s)
                    new, conn = start_one()
                    conn.close()  # its readiness is not waited for: the others serve meanwhile
                    procs[index] = new
        return _shutdown(procs, config.drain_timeout_s)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        holder.close()
        if own_dir is not None:
            os.environ.pop(MULTIPROC_ENV, None)
            shutil.rmtree(own_dir, ignore_errors=True)


def _shutdown(procs: list[Any], drain_timeout_s: float) -> int:
    for proc in procs:
        if proc.is_alive() and proc.pid is not None:
            os.kill(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + drain_timeout_s + 10.0
    status = 0
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            log.warning("worker %d did not stop after the drain; killed", proc.pid)
            proc.kill()
            proc.join()
            status = 1
        elif proc.exitcode not in (0, None):
            status = 1
        _mark_dead(proc.pid)
    return status


def _mark_dead(pid: int | None) -> None:
    """Forget a dead worker's live gauges (only when the workers share metrics)."""
    if pid is None or multiprocess_dir() is None:
        return
    from .metrics import mark_process_dead  # present: the metrics directory exists only with metrics on

    mark_process_dead(pid)
