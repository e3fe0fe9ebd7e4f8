"""Watch the optimizer of a distributed training run: DDP, ZeRO and FSDP2, two processes, CPU and gloo.

    torchrun --standalone --nproc-per-node 2 docs/examples/watch_distributed.py

Each wrapper trains a small MLP for a few steps with refwd's watcher attached; every rank checks the step it takes
(DDP: the whole model; ZeRO: the shard its local optimizer owns; FSDP2: its local shards) and the ranks agree after
each checked step, so a wrong step on any rank stops all of them with the rank named. Exits 0 when every step of
every rank agrees with refwd. FSDP2 runs on the CPU from torch 2.7; with an older torch the example says so and
skips it.
"""
import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.optim import ZeroRedundancyOptimizer
from torch.nn.parallel import DistributedDataParallel

from refwd_validation.watch import watch
from refwd_validation.watch_distributed import FSDP2_ON_CPU_SINCE, fsdp2_runs_on_cpu

STEPS = 5


def mlp():
    torch.manual_seed(0)   # the same initial params on every rank
    return torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 32), torch.nn.Tanh(),
                               torch.nn.Linear(32, 1))


def train(model, optimizer, name):
    rank = dist.get_rank()
    generator = torch.Generator().manual_seed(100 + rank)   # each rank its own batches
    with watch(optimizer, model, timeout=60.0) as watcher:
        for _ in range(STEPS):
            x = torch.randn(16, 8, generator=generator)
            y = x.sum(dim=1, keepdim=True).sin()
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()
    print(f"rank {rank}, {name}: {watcher.summary()}", flush=True)


def main():
    dist.init_process_group("gloo")
    model = DistributedDataParallel(mlp())
    train(model, torch.optim.AdamW(model.parameters(), lr=1e-2), "DDP + AdamW")

    model = DistributedDataParallel(mlp())
    zero = ZeroRedundancyOptimizer(model.parameters(), optimizer_class=torch.optim.Adam, lr=1e-2, amsgrad=True)
    train(model, zero, "DDP + ZeroRedundancyOptimizer(Adam)")

    if fsdp2_runs_on_cpu():
        from torch.distributed.fsdp import fully_shard
        model = mlp()
        mesh = init_device_mesh("cpu", (dist.get_world_size(),))
        for layer in model:
            if isinstance(layer, torch.nn.Linear):
                fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
        train(model, torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9, nesterov=True), "FSDP2 + SGD")
    else:
        print(f"rank {dist.get_rank()}, FSDP2 + SGD: not run: torch {torch.__version__}'s FSDP2 needs CUDA "
              f"(on the CPU from torch {FSDP2_ON_CPU_SINCE})", flush=True)
    dist.barrier()   # every rank done before the groups go: torch 2.7.1 hangs in destroy_process_group otherwise
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
