"""One rank of a distributed watcher scenario (tests/test_watch_distributed.py starts two, on 127.0.0.1, gloo, CPU).

    python tests/distributed_worker.py SCENARIO RANK WORLD_SIZE PORT

Scenarios: "ddp", "zero", "fsdp2": a small MLP trained 4 steps under that wrapper with the watcher on, where rank
``WRONG_RANK`` uses an optimizer whose step at ``WRONG_STEP`` moves one element of one param by a little after
torch's own step; "dead": rank 1's process exits before its second step; "stalled": rank 1 stops calling step().
Prints the watcher's error (or summary) and exits 0 only when no error was raised.
"""
import os
import sys
import time

import torch
import torch.distributed as dist

WRONG_RANK, WRONG_STEP, WRONG_PARAM, WRONG_ELEMENT = 1, 3, "0.weight", (0, 2)


def wrong(optimizer_class):
    """``optimizer_class`` whose step number WRONG_STEP adds 1e-3 to one element of WRONG_PARAM's local data."""
    class Wrong(optimizer_class):
        steps = 0

        def step(self, closure=None):
            loss = super().step(closure)
            type(self).steps += 1
            if type(self).steps == WRONG_STEP:
                with torch.no_grad():
                    param = self.wrong_param
                    local = param.to_local() if hasattr(param, "to_local") else param
                    local[WRONG_ELEMENT] += 1e-3
            return loss
    Wrong.__name__ = optimizer_class.__name__
    return Wrong


def mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))


def main(scenario, rank, world, port):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
    dist.init_process_group("gloo", rank=rank, world_size=world)
    from refwd_validation.watch import watch
    model = mlp()
    names = dict(model.named_parameters())
    optimizer_class = wrong(torch.optim.Adam) if rank == WRONG_RANK and scenario in ("ddp", "zero", "fsdp2") \
        else torch.optim.Adam
    if scenario == "ddp":
        model = torch.nn.parallel.DistributedDataParallel(model)
        optimizer = optimizer_class(model.parameters(), lr=1e-2)
        optimizer.wrong_param = names[WRONG_PARAM]
    elif scenario == "zero":
        from torch.distributed.optim import ZeroRedundancyOptimizer
        model = torch.nn.parallel.DistributedDataParallel(model)
        zero = ZeroRedundancyOptimizer(model.parameters(), optimizer_class=optimizer_class, lr=1e-2)
        zero.optim.wrong_param = next(p for group in zero.optim.param_groups for p in group["params"]
                                      if p.dim() == 2)   # a weight this rank owns
        optimizer = zero
    elif scenario == "fsdp2":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard
        mesh = init_device_mesh("cpu", (world,))
        fully_shard(model[0], mesh=mesh)
        fully_shard(model[2], mesh=mesh)
        fully_shard(model, mesh=mesh)
        optimizer = optimizer_class(model.parameters(), lr=1e-2)
        optimizer.wrong_param = dict(model.named_parameters())[WRONG_PARAM]
    else:   # "dead", "stalled": no wrapper, the watcher's agreement is the only collective
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(rank)
    try:
        with watch(optimizer, model, timeout=5.0) as watcher:
            for step in range(1, 5):
                if step == 2 and rank == 1 and scenario == "dead":
                    os._exit(3)
                if step == 2 and rank == 1 and scenario == "stalled":
                    time.sleep(60)
                x = torch.randn(8, 6, generator=generator)
                optimizer.zero_grad()
                torch.nn.functional.mse_loss(model(x), x.sum(1, keepdim=True)).backward()
                optimizer.step()
    except Exception as error:
        print(f"{type(error).__name__}: {error}", flush=True)
        os._exit(1)   # no teardown: the other rank may be gone
    print(f"rank {rank}: {watcher.summary()}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
