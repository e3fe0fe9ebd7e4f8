"""Running cases: in this process or in a pool of worker processes, each result fed to the reporters in case order.

A run feeds every result to a list of *reporters* (objects with ``start(cases)``, ``result(result)`` and
``finish(results, seconds)``): :class:`Progress` on stderr, and under ``--record`` the recorder. ``refwd validate``
runs its cases in a ``concurrent.futures`` process pool (one worker per core by default, ``--jobs N``); the pool's
workers fork from a forkserver that :func:`start_pool_server` starts early, so that it imports torch while the
command does.
"""
import concurrent.futures
import multiprocessing
import multiprocessing.forkserver
import signal
import time


class Progress:
    """Progress on stderr (tqdm: a bar on a terminal, sparse lines elsewhere), and a line per failure."""

    def __init__(self, stream, quiet=False, verbose=False):
        self.stream, self.quiet, self.verbose = stream, quiet, verbose

    def start(self, cases):
        from tqdm import tqdm  # late: `refwd --version` runs on refwd's own dependencies
        self.bad = 0
        terminal = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.bar = tqdm(total=len(cases), file=self.stream, disable=self.quiet, unit="case", leave=False,
                        mininterval=1.0 if terminal else 10.0, dynamic_ncols=True)  # a log gets a line per 10 s

    def result(self, result):
        self.bad += not result.ok
        if not self.quiet and (self.verbose or not result.ok):
            self.bar.write(f"{result.case.id}: {result.status} ({result.detail})", file=self.stream)
        self.bar.set_postfix_str(f"{self.bad} failing", refresh=False)
        self.bar.update()

    def finish(self, results, seconds):
        self.bar.close()

    def interrupted(self):
        self.bar.close()


COMPILE_COST = 1000   # steps: a compiled case's tracing and (cached) compilation take about a 1,000-step run's time


def expected_cost(case):
    """A case's expected running time in steps, for the pool's longest-first order."""
    return case.total_steps + (COMPILE_COST if case.impl == "compiled" else 0)


def run(cases, reporters, *, rules=None, recorder=None, run_one=None, jobs=1):
    """Run ``cases``, feeding each result to the reporters in case order; return (results, seconds, interrupted).

    ``jobs`` > 1 runs them in a pool of that many processes (``concurrent.futures``); ``rules``, ``recorder``
    and ``run_one`` need this process. Ctrl-C (KeyboardInterrupt) stops the run: the results so far are
    returned with ``interrupted`` True, and the reporters are not finished (a recording gets no manifest: it is
    incomplete, and never loads).
    """
    from .harness import run_case
    for reporter in reporters:
        reporter.start(cases)
    started = time.perf_counter()
    results = []
    pool = None
    try:
        if jobs > 1 and len(cases) > 1 and rules is None and recorder is None and run_one is None:
            pool = concurrent.futures.ProcessPoolExecutor(min(jobs, len(cases)), mp_context=_pool_context(),
                                                          initializer=_worker)
            # the longest runs first, so that no worker is left with one at the end; results come back in case order
            longest_first = sorted(range(len(cases)), key=lambda index: -expected_cost(cases[index]))
            futures = {index: pool.submit(run_case, cases[index]) for index in longest_first}
            outcomes = (futures[index].result() for index in range(len(cases)))
        else:
            outcomes = (run_one(case) if run_one else run_case(
                case, rules=rules, trajectory=None if recorder is None else recorder.tape(case)) for case in cases)
        for result in outcomes:
            results.append(result)
            for reporter in reporters:
                reporter.result(result)
    except KeyboardInterrupt:
        if pool is not None:
            _stop(pool)
        for reporter in reporters:
            getattr(reporter, "interrupted", lambda: None)()
        return results, time.perf_counter() - started, True
    except BaseException:
        if pool is not None:
            _stop(pool)
        raise
    if pool is not None:
        pool.shutdown(wait=True)
    seconds = time.perf_counter() - started
    for reporter in reporters:
        reporter.finish(results, seconds)
    return results, seconds, False


def _stop(pool):
    """End the pool now (Ctrl-C, or a reporter's error): the queued cases are cancelled and the running ones not
    waited for; their workers are terminated."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(timeout=10)


def _pool_context():
    """forkserver: the workers fork from a fresh one-thread server that imported the harness (and torch) once.
    Forking this process instead can hang a worker: torch's own threads (invisible to Python) may hold a lock."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["refwd_validation.harness", "torch._dynamo"])   # torch.optim imports _dynamo
    return context


def start_pool_server(jobs):
    """Start the pool's server now, so that it imports torch while this process does (``run`` uses it)."""
    if jobs > 1:
        _pool_context()
        multiprocessing.forkserver.ensure_running()


def _worker():
    """A pool process: Ctrl-C is the parent's to handle; torch on one thread (:func:`twin.one_thread`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch
    torch.set_num_threads(1)
