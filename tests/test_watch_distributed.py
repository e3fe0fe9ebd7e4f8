"""The watcher in distributed training: two processes on 127.0.0.1, gloo, CPU (tests/distributed_worker.py).

A wrong step on one rank is caught there and reported on every rank with its rank, step, parameter, key and
element; a rank whose process died, or that stopped calling step(), is named within the watcher's timeout (5 s
here), never a hang. docs/examples/watch_distributed.py runs clean under torchrun.
"""
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
if not torch.distributed.is_available():
    pytest.skip("this torch has no torch.distributed", allow_module_level=True)

from refwd_validation.watch_distributed import FSDP2_ON_CPU_SINCE, fsdp2_runs_on_cpu  # noqa: E402

pytestmark = pytest.mark.torch
ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("distributed_worker.py")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_ranks(scenario, timeout=120, only_rank_0=False):
    """Start both ranks; return [(exit code, output)] per rank and the seconds until rank 0 ended (with
    ``only_rank_0`` the other rank is killed then: a stalled rank)."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    started = time.monotonic()
    processes = [subprocess.Popen([sys.executable, str(WORKER), scenario, str(rank), "2", str(port)], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for rank in (0, 1)]
    results, seconds = [], None
    try:
        for process in processes:
            if only_rank_0 and process is processes[1]:
                process.kill()
            output, _ = process.communicate(timeout=max(1, timeout - (time.monotonic() - started)))
            results.append((process.returncode, output))
            seconds = seconds or time.monotonic() - started
    finally:
        for process in processes:
            process.kill()
    return results, seconds


@pytest.mark.parametrize("scenario, parameter, element", [
    ("ddp", "module.0.weight", "[0, 2]"), ("fsdp2", "0.weight", "[0, 2]")])
def test_a_wrong_step_on_one_rank_stops_every_rank_naming_it(scenario, parameter, element):
    if scenario == "fsdp2" and not fsdp2_runs_on_cpu():
        pytest.skip(f"torch {torch.__version__}'s FSDP2 needs CUDA (on the CPU from {FSDP2_ON_CPU_SINCE})")
    results, _ = run_ranks(scenario)
    expected = f"rank 1: lockstep: step 3, {parameter}, param{element}: refwd "
    for rank, (code, output) in enumerate(results):
        assert code == 1, (rank, output)
        assert "WatchError: torch's optimizer step disagrees with refwd at 1 tensor(s):" in output, output
        assert expected in output, output
        assert "rank 0: lockstep" not in output   # rank 0's steps were right


def test_zero_checks_the_shard_each_rank_owns():
    results, _ = run_ranks("zero")
    for rank, (code, output) in enumerate(results):
        assert code == 1, (rank, output)
        assert "rank 1: lockstep: step 3, module." in output and ".weight, param[0, 2]" in output, output


@pytest.mark.parametrize("scenario", ["dead", "stalled"])
def test_a_missing_rank_is_named_within_the_timeout(scenario):
    results, seconds = run_ranks(scenario, timeout=90, only_rank_0=scenario == "stalled")
    code, output = results[0]
    assert code == 1, output
    assert "DistributedWatchError: rank 0: the ranks did not agree on optimizer step 2 within 5 s" in output, output
    assert "1" in output.split("within 5 s", 1)[1]   # torch's cause names rank 1
    if scenario == "dead":
        assert results[1][0] == 3
    assert seconds < 40   # rank 0 stops at the timeout, not after the stalled rank's 60 s of sleep


def test_the_example_trains_under_ddp_zero_and_fsdp2_and_exits_0():
    port = free_port()
    process = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
         "--master-addr", "127.0.0.1", "--master-port", str(port), str(ROOT / "docs/examples/watch_distributed.py")],
        env={**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
        timeout=300, cwd=ROOT)
    assert process.returncode == 0, process.stdout + process.stderr
    for rank in (0, 1):
        for wrapper in ("DDP + AdamW", "DDP + ZeroRedundancyOptimizer(Adam)", "FSDP2 + SGD"):
            if wrapper.startswith("FSDP2") and not fsdp2_runs_on_cpu():
                assert f"rank {rank}, {wrapper}: not run: torch {torch.__version__}'s FSDP2 needs CUDA" in process.stdout
                continue
            assert f"rank {rank}, {wrapper}: 5 steps checked against refwd, 0 mismatches" in process.stdout
