"""Dry evaluation in parallel: local processes or a Dask cluster, answers in input order.

A dry run stores nothing, so every line can be evaluated on its own copy of the
sandbox: each worker builds that copy itself from the rules file (its text
travels with the work, so a remote worker needs no shared disk) and sets its
clock to the clock the lines were handed out at. The input is cut into shards
(8 lines first, for a quick first answer, doubling up to 1,024), a bounded
number of them is in flight at once, and the answers come back shard by shard
in input order: memory stays flat however long the input.

A non-dry run cannot work this way: every update may change what the next one
sees (limit counters, stored sessions, profiles, created codes), so it stays
sequential. Lines that move the clock are the one exception a dry run has; the
caller names them (``moves_clock``) and they are evaluated here, in order, on
the caller's sandbox, so every line after them is handed out at the new time.

Example, the shape ``eval --dry --jobs N`` runs::

    from sandbox.parallel import LocalRunner, evaluate_dry

    def count_effects(sb, number, raw):
        return number, len(sb.update(f"line-{number}", json.loads(raw), dry=True).effects)

    with LocalRunner(jobs=2) as runner:
        for number, effects in evaluate_dry("rules.py", enumerate(lines, 1), count_effects,
                                            runner=runner):
            ...

``evaluate`` is called in the workers, so it must be picklable (a module-level
function, or an instance of a module-level class) and importable there, and it
should turn every error of a line into that line's record: an exception it lets
out ends the whole run. A rules file that keeps state of its own between
evaluations (a module-level set a rule fills) gives answers that depend on which
worker saw which line; ``python -m sandbox fuzz`` names such rules.
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import signal
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import CancelledError, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import attrs

from sandbox.core import Sandbox
from sandbox.errors import SandboxError

if TYPE_CHECKING:
    from sandbox.coverage import Coverage

__all__ = [
    "DaskRunner",
    "LocalRunner",
    "ParallelError",
    "RulesSource",
    "Runner",
    "evaluate_dry",
]

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
Line = tuple[int, bytes]
Evaluate = Callable[[Sandbox, int, bytes], R]
# A shard's records, and its rule coverage (Coverage.to_json) when it was asked for.
Answered = tuple[list[R], dict[str, Any] | None]

FIRST_SHARD = 8
MAX_SHARD = 1024


class ParallelError(SandboxError):
    """A parallel run cannot go on: a worker died, the cluster is gone or missing,
    or no Dask worker was alive for the runner's timeout."""


@attrs.frozen
class RulesSource:
    """A rules file as the workers get it: its absolute path and its text.

    A worker loads the file at ``path`` when it holds the same text (so the
    file's own imports and relative paths work as in the main process), and
    otherwise a copy of ``text`` (a remote worker, or a file edited since).
    """

    path: str
    text: str
    digest: str

    @classmethod
    def read(cls, path: str | Path) -> RulesSource:
        from sandbox.fuzzing import RulesFileError

        file = Path(path).resolve()
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RulesFileError(f"cannot read rules file {str(path)!r}: {exc}") from None
        return cls(str(file), text, hashlib.sha256(text.encode()).hexdigest())


class Future(Protocol[R_co]):
    """What a runner's ``submit`` returns: concurrent.futures and Dask futures both are."""

    def result(self) -> R_co: ...

    def cancel(self) -> bool: ...


class Runner(Protocol):
    """Where shards run: ``submit(fn, arg)`` returns a future of ``fn(arg)``. An error
    that ``submit`` or a future's ``result`` raises goes through ``broken``."""

    @property
    def in_flight(self) -> int:
        """How many shards may be submitted and not yet read back."""

    def submit(self, fn: Callable[[Any], R], arg: Any) -> Future[R]: ...

    def broken(self, exc: BaseException) -> ParallelError | None:
        """``exc`` (raised by a future's result) as the runner's failure, or None when
        it is not one (an error of the work itself, raised as it is)."""


@attrs.frozen
class _Shard(Generic[R]):
    rules: RulesSource
    now: datetime
    lines: tuple[Line, ...]
    evaluate: Callable[[Sandbox, int, bytes], R]
    coverage: bool = False


@attrs.frozen
class _Done(Generic[R]):
    """Records already known (a clock move evaluated here), queued in their place."""

    records: list[R]
    first: int
    coverage: dict[str, Any] | None = None

    def result(self) -> Answered[R]:
        return self.records, self.coverage

    def cancel(self) -> bool:
        return False


@attrs.frozen
class _Failed:
    """A shard that could not be submitted: its result is the submit's error."""

    error: Exception

    def result(self) -> Any:
        raise self.error

    def cancel(self) -> bool:
        return False


def evaluate_dry(
    rules: str | Path | RulesSource,
    lines: Iterable[Line],
    evaluate: Callable[[Sandbox, int, bytes], R],
    *,
    runner: Runner,
    sandbox: Sandbox | None = None,
    moves_clock: Callable[[bytes], bool] | None = None,
    coverage: Coverage | None = None,
) -> Generator[R, None, None]:
    """``evaluate(sb, number, raw)`` for each ``(number, raw)`` of ``lines``, in parallel
    on ``runner``; the records in input order, as soon as each shard is back.

    ``sandbox`` is this process's sandbox of the same rules file (built here if not
    given: a broken file raises RulesFileError before any work). Its clock is the
    clock the lines are handed out at; the lines for which ``moves_clock(raw)`` is
    true are evaluated on it, here and in order. Closing the iterator early (a
    ``--strict`` stop) cancels the shards not yet started.

    With ``coverage``, each worker also counts the rule coverage of the answers its
    shard gave (of its own sandbox only: a Dask worker runs shards in several
    threads) and sends it back with the records; it is merged into ``coverage`` as
    each shard is read, so it is the whole run's once the records are all read.
    """
    source = rules if isinstance(rules, RulesSource) else RulesSource.read(rules)
    if sandbox is None:
        sandbox = _load(source.path)
    if coverage is not None:
        coverage.know(sandbox)  # every rule listed, in the file's order, reached or not
    pieces = _pieces(source, lines, evaluate, sandbox, moves_clock, coverage is not None)
    # Each entry: the future of a shard's records, and the line numbers it spans.
    pending: deque[tuple[Future[Answered[R]] | _Done[R] | _Failed, int, int]] = deque()

    def read(entry: tuple[Future[Answered[R]] | _Done[R] | _Failed, int, int]) -> list[R]:
        records, counted = _result(*entry, runner)
        if coverage is not None and counted is not None:
            from sandbox.coverage import Coverage

            coverage.merge(Coverage.from_json(counted))
        return records

    try:
        while True:
            # Wait before reading on: at most `in_flight` shards of input are held.
            while len(pending) >= max(runner.in_flight, 1):
                yield from read(pending.popleft())
            piece = next(pieces, None)
            if piece is None:
                break
            if isinstance(piece, _Done):
                pending.append((piece, piece.first, piece.first))
                continue
            first, last = piece.lines[0][0], piece.lines[-1][0]
            try:
                pending.append((runner.submit(_run, piece), first, last))
            except Exception as exc:
                # A pool found broken on submit: the shards before this one may still
                # have their answers, so the failure takes its place in the queue.
                pending.append((_Failed(exc), first, last))
                break
        while pending:
            yield from read(pending.popleft())
    finally:
        for future, _, _ in pending:
            future.cancel()


def _pieces(
    source: RulesSource,
    lines: Iterable[Line],
    evaluate: Callable[[Sandbox, int, bytes], R],
    sb: Sandbox,
    moves_clock: Callable[[bytes], bool] | None,
    coverage: bool,
) -> Iterator[_Shard[R] | _Done[R]]:
    """Shards of growing size, cut before each clock move, which is evaluated here."""
    size = FIRST_SHARD
    shard: list[Line] = []
    for number, raw in lines:
        if moves_clock is not None and moves_clock(raw):
            if shard:
                yield _Shard(source, sb.now, tuple(shard), evaluate, coverage)
                shard = []
            records, counted = _evaluate(sb, evaluate, [(number, raw)], coverage)
            yield _Done(records, number, counted)
            continue
        shard.append((number, raw))
        if len(shard) >= size:
            yield _Shard(source, sb.now, tuple(shard), evaluate, coverage)
            shard = []
            size = min(size * 2, MAX_SHARD)
    if shard:
        yield _Shard(source, sb.now, tuple(shard), evaluate, coverage)


def _evaluate(
    sb: Sandbox,
    evaluate: Callable[[Sandbox, int, bytes], R],
    lines: Iterable[Line],
    coverage: bool,
) -> Answered[R]:
    """The records of ``lines`` on ``sb`` and, if asked for, the rule coverage of its answers."""
    if not coverage:
        return [evaluate(sb, number, raw) for number, raw in lines], None
    from sandbox.coverage import Coverage

    counts = Coverage()
    with counts.recording(sandbox=sb):
        records = [evaluate(sb, number, raw) for number, raw in lines]
    return records, counts.to_json()


def _result(
    future: Future[Answered[R]] | _Done[R] | _Failed, first: int, last: int, runner: Runner
) -> Answered[R]:
    try:
        return future.result()
    except Exception as exc:
        failure = exc if isinstance(exc, ParallelError) else runner.broken(exc)
        if failure is None:
            raise
        span = f"line {first}" if first == last else f"lines {first}-{last}"
        raise ParallelError(
            f"{failure} while {span} or later ones were being evaluated; "
            f"no answers from line {first} on"
        ) from None


# ---------------------------------------------------------------------------
# In the workers

_local = threading.local()  # a Dask worker may run shards in several threads at once


def _run(shard: _Shard[R]) -> Answered[R]:
    """Evaluate one shard on this worker's sandbox of its rules file, at its clock."""
    cache: dict[str, Sandbox] | None = getattr(_local, "sandboxes", None)
    if cache is None:
        cache = _local.sandboxes = {}
    digest = shard.rules.digest
    if digest not in cache:
        cache[digest] = _load(_local_copy(shard.rules))
    sb = cache[digest]
    if sb.now != shard.now:
        sb.set_now(shard.now)
    return _evaluate(sb, shard.evaluate, shard.lines, shard.coverage)


def _load(path: str) -> Sandbox:
    from sandbox.fuzzing import load_rules

    factory, _ = load_rules(path)
    return factory()


def _local_copy(rules: RulesSource) -> str:
    """The path of a file holding the rules' text: the original when it still does."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        if Path(rules.path).read_text(encoding="utf-8") == rules.text:
            return rules.path
    folder = Path(tempfile.mkdtemp(prefix="sandbox-rules-"))
    copy = folder / Path(rules.path).name  # the same name, so messages name the same file
    copy.write_text(rules.text, encoding="utf-8")
    return str(copy)


def _ignore_interrupts() -> None:
    # Ctrl-C reaches the whole process group: the main process stops the run and
    # shuts the pool down; a worker printing its own KeyboardInterrupt would only add noise.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# ---------------------------------------------------------------------------
# Runners


class LocalRunner:
    """``jobs`` local worker processes (started with 'spawn': the same on every
    platform, and safe beside the threads of a progress bar)."""

    def __init__(self, jobs: int) -> None:
        if jobs < 1:
            raise ValueError(f"jobs must be at least 1, got {jobs}")
        self.jobs = jobs
        self._pool = ProcessPoolExecutor(
            max_workers=jobs,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_ignore_interrupts,
        )

    @property
    def in_flight(self) -> int:
        # Two a worker: one running, one waiting, so no worker idles between shards.
        return 2 * self.jobs

    def submit(self, fn: Callable[[Any], R], arg: Any) -> Future[R]:
        return self._pool.submit(fn, arg)

    def broken(self, exc: BaseException) -> ParallelError | None:
        if not isinstance(exc, BrokenProcessPool):
            return None
        return ParallelError(
            "a worker process ended abruptly (killed, out of memory, or a rule that "
            "exits the process)"
        )

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> LocalRunner:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


DASK_HINT = "pip install 'promo-sandbox[dask]'"
DASK_TIMEOUT = 30.0


class DaskRunner:
    """The workers of a Dask cluster, through ``distributed.Client(address)``; or of a
    ``client`` you already have (it is left open). Needs the ``dask`` extra.

    ``timeout`` (seconds) bounds every wait on the cluster: reaching the scheduler,
    a first worker to join, and, while shards are out, a stretch with no live worker
    (or no answer from the scheduler). Past it, and as soon as the connection to the
    scheduler is lost, reading a shard's records raises :class:`ParallelError`; the
    records read before it are the ones a full run starts with.
    """

    def __init__(
        self, address: str | None = None, *, client: Any = None, timeout: float = DASK_TIMEOUT
    ) -> None:
        try:
            import distributed
        except ImportError:
            raise ParallelError(
                f"--dask needs Dask's distributed scheduler, which is not installed: {DASK_HINT}"
            ) from None
        if not timeout > 0:
            raise ValueError(f"timeout must be seconds > 0, got {timeout!r}")
        self._distributed = distributed
        self._own = client is None
        self.timeout = timeout
        # How often a wait for a shard stops to ask the scheduler whether any worker is
        # alive: a worker lost is seen within a tick, and the run ends a timeout later.
        self._tick = min(1.0, timeout / 4)
        self._idle_since: float | None = None
        if client is None:
            if not address:
                raise ValueError("DaskRunner needs an address or a client")
            try:
                client = distributed.Client(address, timeout=timeout)  # type: ignore[no-untyped-call]
            except (OSError, TimeoutError, ValueError) as exc:
                raise ParallelError(
                    f"cannot reach the Dask scheduler at {address!r} within {timeout:g} s: {exc}"
                ) from None
        self.client = client
        self.address = str(client.scheduler.address)
        try:
            # An adaptive cluster may start with none: its first worker is worth a wait.
            client.wait_for_workers(1, timeout=timeout)
            threads = int(sum(client.nthreads().values()))
        except (OSError, TimeoutError, distributed.comm.core.CommClosedError):
            threads = 0
        if threads < 1:
            if self._own:
                client.close()
            raise ParallelError(
                f"the Dask cluster at {self.address!r} had no worker for {timeout:g} s"
            )
        self.threads = threads

    @property
    def in_flight(self) -> int:
        return 2 * self.threads

    def submit(self, fn: Callable[[Any], R], arg: Any) -> Future[R]:
        # pure=False: two shards with equal lines are still two tasks with their own key.
        return _DaskFuture(self, self.client.submit(fn, arg, pure=False))

    def wait(self, future: Any) -> Any:
        """``future.result()``, given up (:class:`ParallelError`) when the cluster can
        no longer deliver it (:meth:`check_alive`, every tick, in a watching thread)."""
        # The wait may be for the shard to run or, once it has, for its records to be
        # fetched from its worker. A worker that dies holding them makes the scheduler
        # run the shard again, so the fetch too waits for a live worker, with no timeout
        # of its own; the watcher cancels the future to end either wait.
        given_up: list[ParallelError] = []
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(self._tick):
                try:
                    self.check_alive()
                except ParallelError as exc:
                    given_up.append(exc)
                    future.cancel()
                    return

        watcher = threading.Thread(target=watch, name="sandbox-dask-watch", daemon=True)
        watcher.start()
        try:
            return future.result()
        except CancelledError:
            if given_up:
                raise given_up[0] from None
            raise
        finally:
            stop.set()
            watcher.join()

    def check_alive(self) -> None:
        """Raise ParallelError when the scheduler is gone, or when it has had no live
        worker (or has not answered) for ``timeout`` seconds."""
        distributed = self._distributed
        if self.client.status != "running":
            # The client cancels every future when its connection to the scheduler
            # closes, so even a reconnect would bring none of the work back.
            raise self._lost()
        try:
            # callback_timeout: a scheduler that stops answering counts as no worker.
            threads = sum(self.client.nthreads(callback_timeout=self._tick * 2).values())
            missing = "no live worker"
        except (OSError, TimeoutError, distributed.comm.CommClosedError):
            threads, missing = 0, "no answer from the scheduler"
        now = time.monotonic()
        if threads:
            self._idle_since = None
            return
        if self._idle_since is None:
            self._idle_since = now
        elif now - self._idle_since >= self.timeout:
            raise ParallelError(
                f"the Dask cluster at {self.address!r} had {missing} for "
                f"{self.timeout:g} s (--dask-timeout)"
            )

    def _lost(self) -> ParallelError:
        return ParallelError(f"lost the connection to the Dask scheduler at {self.address!r}")

    def broken(self, exc: BaseException) -> ParallelError | None:
        distributed = self._distributed
        if isinstance(exc, distributed.KilledWorker):
            return ParallelError(
                f"Dask workers kept dying on the same shard, so it was given up: {exc}"
            )
        if isinstance(exc, CancelledError):
            # The client cancels every future when its connection to the scheduler
            # closes; any other cancel came from outside this run.
            if getattr(exc, "reason", None) == "scheduler-connection-lost":
                return self._lost()
            return ParallelError(f"a shard was cancelled on the Dask cluster: {exc}")
        if isinstance(exc, OSError | distributed.comm.CommClosedError | TimeoutError):
            # Fetching a result when the connection drops; the error's own text is a
            # repr of the connection, no help to the reader.
            return self._lost()
        return None

    def close(self) -> None:
        if self._own:
            self.client.close()

    def __enter__(self) -> DaskRunner:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@attrs.frozen
class _DaskFuture(Generic[R]):
    """A Dask future whose ``result`` gives up when the cluster cannot deliver it."""

    runner: DaskRunner
    future: Any

    def result(self) -> R:
        result: R = self.runner.wait(self.future)
        return result

    def cancel(self) -> bool:
        if self.runner.client.status != "running":
            return False  # the scheduler is gone: nothing left to cancel there
        cancelled: bool = self.future.cancel()
        return cancelled
