"""The watcher under torch.distributed: the step each rank takes, checked on that rank, and agreed on by all ranks.

- **DDP** (``DistributedDataParallel``): every rank holds the whole model and steps it; each rank checks its own
  step.
- **ZeRO** (``torch.distributed.optim.ZeroRedundancyOptimizer``): each rank steps the shard of the params it owns
  with a local optimizer (``zero.optim``); the watcher attaches there (:func:`local_optimizer`) and checks that
  shard.
- **FSDP2** (``torch.distributed.fsdp.fully_shard``): params, grads and state are DTensors; each rank checks its
  local shards (``DTensor.to_local()``, in :func:`refwd_validation.interop.take`), element indices counted in the
  local shard.

After each checked step the ranks agree (:class:`Agreement`): on a gloo group of the watcher's own, with its own
timeout, every rank learns every rank's mismatches and step count, so a wrong step on one rank stops every rank at
the same step, with the rank named, instead of leaving the others to hang in their next collective. A rank that
stops calling ``step()``, or a process that died, is named by ``monitored_barrier`` within the timeout; a group
that breaks is reported with the rank and torch's cause. Nothing else of the watcher communicates.
"""
import datetime
import sys

# FSDP2 runs on the CPU with gloo from torch 2.7 (measured with docs/examples/watch_distributed.py: 2.4.1 and 2.5.1
# create CUDA streams in fully_shard's lazy init, "CUDA driver version is insufficient"; 2.6.0 calls record_event on
# a CPU stream, which has none; 2.7.1 and 2.13.0 run). Before 2.7 it runs on GPUs only, where the watcher reads its
# DTensor shards by the same code (interop.local).
FSDP2_ON_CPU_SINCE = "2.7"


def fsdp2_runs_on_cpu():
    """Whether this torch's FSDP2 (``fully_shard``) trains on the CPU: from torch 2.7 (:data:`FSDP2_ON_CPU_SINCE`)."""
    import torch
    return torch.__version__ >= FSDP2_ON_CPU_SINCE


class DistributedWatchError(RuntimeError):
    """The ranks could not agree on a checked step (a rank missing, a broken process group): rank and cause."""


def local_optimizer(optimizer):
    """The optimizer whose step the watcher checks: a ZeroRedundancyOptimizer's local optimizer over the params
    this rank owns; any other optimizer itself."""
    module = sys.modules.get("torch.distributed.optim.zero_redundancy_optimizer")   # imported by whoever made one
    if module is not None and isinstance(optimizer, module.ZeroRedundancyOptimizer):
        return optimizer.optim
    return optimizer


def current_rank():
    """This process's rank in the default group, or None outside torch.distributed (or in a group of one)."""
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    return dist.get_rank()


class Agreement:
    """The ranks' agreement after each checked step, on a gloo group of the watcher's own (``timeout`` seconds).

    Made by every rank at once (a collective), when the watcher is made."""

    def __init__(self, timeout):
        import torch.distributed as dist
        self.dist, self.timeout = dist, datetime.timedelta(seconds=timeout)
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.group = dist.new_group(backend="gloo", timeout=self.timeout)

    def gather(self, step, mismatches):
        """Every rank's (rank, step, [mismatch texts]) after this rank's checked ``step``. Raises
        :class:`DistributedWatchError` naming the ranks that did not arrive within the timeout, or the cause."""
        dist = self.dist
        try:
            dist.monitored_barrier(group=self.group, timeout=self.timeout, wait_all_ranks=True)
            gathered = [None] * self.world
            dist.all_gather_object(gathered, (self.rank, step, [m.describe() for m in mismatches]), group=self.group)
        except RuntimeError as error:
            cause = " ".join(str(error).split())
            raise DistributedWatchError(
                f"rank {self.rank}: the ranks did not agree on optimizer step {step} within "
                f"{self.timeout.total_seconds():g} s (a rank stopped calling step(), or its process or the process "
                f"group died): {cause}") from None
        return gathered


def disagreements(gathered):
    """Lines naming each rank's mismatches, and ranks at another step count than the others ([] if none)."""
    lines = []
    steps = {rank: step for rank, step, _ in gathered}
    if len(set(steps.values())) > 1:
        lines.append("ranks are at different optimizer steps: " + ", ".join(
            f"rank {rank} at step {step}" for rank, step in sorted(steps.items()))
            + " (a rank skipped or repeated step())")
    for rank, _, texts in sorted(gathered):
        lines += [f"rank {rank}: {text}" for text in texts]
    return lines
