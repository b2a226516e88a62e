"""Spawned worker processes for LIBERO / SIMPLER evaluation (`rollout.py`) and generation, each with its own env and
small thread pools."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",  # numpy / torch pools
                    "LP_NUM_THREADS")  # Mesa llvmpipe, the CPU renderer behind EGL / OSMesa without a GPU


@contextlib.contextmanager
def thread_limits(threads: int):
    """Set the thread-pool variables for the workers spawned inside (they read them at import)."""
    saved = {k: os.environ.get(k) for k in THREAD_VARIABLES}
    os.environ.update({k: str(threads) for k in THREAD_VARIABLES})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _exit_with_parent(parent: int) -> None:
    """A worker's watch: when its parent dies without shutting the pool down (SIGKILL, or a SIGTERM sent to it
    alone), exit rather than render and simulate the queued episodes for nobody."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _start_worker(parent: int, initializer, initargs: tuple) -> None:
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True, name="exit-with-parent").start()
    initializer(*initargs)


@contextlib.contextmanager
def spawn_pool(workers: int, threads: int, initializer, initargs: tuple = ()):
    """A ProcessPoolExecutor of `workers` spawned processes with `threads` threads each; a worker that dies
    (its initializer raised, or it ran out of memory) raises one RuntimeError instead of BrokenProcessPool, and
    the workers exit within a second or so when this process dies."""
    with thread_limits(threads), ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                                                     initializer=_start_worker,
                                                     initargs=(os.getpid(), initializer, initargs)) as pool:
        try:
            yield pool
        except BrokenProcessPool as error:
            raise RuntimeError("a worker process died (its own traceback is printed above: a failed "
                               "policy load or env creation, or memory); fix that and run again") from error


def run_in_pool(workers: int, threads: int, initializer, initargs: tuple, episode_fn, jobs: list):
    """`episode_fn(job)` for every job in `workers` spawned processes (also for 1: the same code path, so 1 vs N
    workers compare fairly); yields the results as they finish, in completion order.

    At most `workers` jobs are in flight, so the parent sleeps in `wait` until one finishes (no polling) and a
    job never queues behind a slow one it could have overtaken. Jobs start in the order given."""
    with spawn_pool(workers, threads, initializer, initargs) as pool:
        pending, queue = set(), list(reversed(jobs))
        while queue or pending:
            while queue and len(pending) < workers:
                pending.add(pool.submit(episode_fn, queue.pop()))
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
