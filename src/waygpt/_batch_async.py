"""The asyncio driver of ``waygpt.batch``, for ``AsyncWayGPTClient``: one task a request.

Only waiting and calling are here; every decision is ``_batch._Run``'s, as for the threads.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Optional, Set

from ._batch import _TICK, CALL_ERRORS, BatchSummary, _Run, _Stop
from ._batch_files import BatchRequest

__all__ = ["run_batch"]


async def _one(run: _Run, request: BatchRequest, calling: Set[Any]) -> None:
    task = asyncio.current_task()
    call = run.calls[request.method]
    attempt = 0
    try:
        while True:
            wait = run.gate.admit(time.monotonic())
            if wait > 0:
                run.wait_mark(1)
                try:
                    await asyncio.sleep(wait)
                finally:
                    run.wait_mark(-1)
                continue
            if run.halt.is_set():
                run.abandon()
                return
            attempt += 1
            calling.add(task)
            try:
                raw, error = await call(**request.body), None
            except CALL_ERRORS as exc:
                raw, error = None, exc
            finally:
                calling.discard(task)
            delay = run.settle(request, attempt, raw, error)
            if delay is None:
                return
            if delay > 0:
                await asyncio.sleep(delay)
    except asyncio.CancelledError:  # the run stops: this request runs again next time
        run.abandon()
        raise
    except Exception as exc:  # noqa: BLE001 - a hook's: the run stops, then raises it
        run.abandon()
        run.crash(exc)


async def _drive(run: _Run, stop: Optional[_Stop]) -> BatchSummary:
    tasks: Set[Any] = set()
    calling: Set[Any] = set()
    try:
        run.watch(stop)  # a stop asked for during the checks: nothing starts
        while True:
            while len(tasks) < run.concurrency:
                try:
                    request = run.take()
                except Exception as exc:  # noqa: BLE001 - the input changed under the run
                    run.crash(exc)
                    request = None
                if request is None:
                    break
                tasks.add(asyncio.ensure_future(_one(run, request, calling)))
            if not tasks:
                break
            done, _ = await asyncio.wait(tasks, timeout=_TICK,
                                         return_when=asyncio.FIRST_COMPLETED)
            tasks -= done
            if run.watch(stop):
                break
            if run.halt.is_set():  # waiting requests go now; those in a call get the grace
                for task in tasks - calling:
                    task.cancel()
    except BaseException:  # cancelled (Ctrl+C under asyncio.run), or KeyboardInterrupt
        run.halt.set()
        run.finish(interrupted=True)
        await _cancel(tasks)
        raise
    run.halt.set()
    summary = run.finish(interrupted=False)
    await _cancel(tasks)
    if run.fatal is not None:
        raise run.fatal
    return summary


async def _cancel(tasks: Set[Any]) -> None:
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks)


async def run_batch(prepare: Callable[[], _Run], stop: Optional[_Stop]) -> BatchSummary:
    """Check the files in a thread (they may be large), then run the requests in tasks."""
    run = await asyncio.get_running_loop().run_in_executor(None, prepare)
    return await _drive(run, stop)
