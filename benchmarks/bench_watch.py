"""Measure the watcher's overhead per optimizer step: ``python benchmarks/bench_watch.py``.

For each model size and optimizer, times a training step (forward, backward, optimizer.step) without a watcher,
with the full check, and with ``sample=0.01``, and prints the median per-step times, their ratio to the plain
step, and the watcher's peak memory in a step (the copies it holds between steps plus what tracemalloc sees it
allocate in one) against the size of the params, grads and optimizer state. ``--profile NAME`` prints where a full check's time goes.
Not a test: timings depend on the machine, so nothing here asserts a figure (docs/interop.md quotes a run).
"""
import argparse
import cProfile
import json
import pstats
import statistics
import time
import tracemalloc

import torch

from refwd_validation.watch import watch

MODELS = {"85 k (64-256-256-10, batch 64)": ((64, 256, 256, 10), 64),
          "10 M (1024-2048-2048-1024, batch 256)": ((1024, 2048, 2048, 1024), 256)}
# Each optimizer as most use it (torch's defaults; SGD with momentum), and the configurations whose state and error
# model cost the most (centered RMSprop with momentum: four tensors a parameter; Adam with amsgrad: three).
OPTIMIZERS = {"SGD, momentum": (torch.optim.SGD, dict(lr=0.01, momentum=0.9)),
              "RMSprop": (torch.optim.RMSprop, dict(lr=1e-3)),
              "RMSprop, centered, momentum": (torch.optim.RMSprop, dict(lr=1e-3, centered=True, momentum=0.5)),
              "Adam": (torch.optim.Adam, dict(lr=1e-3)),
              "Adam, amsgrad": (torch.optim.Adam, dict(lr=1e-3, amsgrad=True)),
              "AdamW": (torch.optim.AdamW, dict(lr=1e-3))}
MODES = {"plain": None, "full": {}, "sample=0.01": {"sample": 0.01}}


def mlp(sizes):
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(torch.nn.Tanh())
    return torch.nn.Sequential(*layers)


def setup(sizes, batch, torch_class, kwargs, options):
    torch.manual_seed(0)
    model = mlp(sizes)
    optimizer = torch_class(model.parameters(), **kwargs)
    x, y = torch.randn(batch, sizes[0]), torch.randn(batch, sizes[-1])

    def step():
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
    watcher = None if options is None else watch(optimizer, model, **options)
    return step, watcher, optimizer


def state_bytes(optimizer):
    """Bytes of the params, their grads and the optimizer's state tensors."""
    total = 0
    for group in optimizer.param_groups:
        for param in group["params"]:
            total += param.numel() * param.element_size() * (2 if param.grad is not None else 1)
            total += sum(value.numel() * value.element_size() for value in optimizer.state[param].values()
                         if torch.is_tensor(value) and value.dim())
    return total


def measure(sizes, batch, torch_class, kwargs, steps):
    """{mode: (median step seconds, watcher peak bytes or None, bytes of params, grads and state)}. The modes' steps
    are timed in turn (plain, full, sampled, plain, ...), each on its own model, so that the machine's drift over
    the run (tens of percent here, from memory reclaim) moves all three alike instead of one configuration."""
    setups = {mode: setup(sizes, batch, torch_class, kwargs, options) for mode, options in MODES.items()}
    for step, _, _ in setups.values():
        step()
        step()   # the state exists from here on
    times = {mode: [] for mode in setups}
    for _ in range(steps):
        for mode, (step, _, _) in setups.items():
            started = time.perf_counter()
            step()
            times[mode].append(time.perf_counter() - started)
    results = {}
    for mode, (step, watcher, optimizer) in setups.items():
        peak = None
        if watcher is not None:
            tracemalloc.start()
            step()
            peak = watcher.copy_bytes + tracemalloc.get_traced_memory()[1]   # held between steps + made in one
            tracemalloc.stop()
            watcher.detach()
            assert not watcher.mismatches, watcher.summary()
        results[mode] = statistics.median(times[mode]), peak, state_bytes(optimizer)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per configuration (median taken)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", choices=["85k", "10M", "both"], default="both")
    parser.add_argument("--json", metavar="PATH", help="also write the rows and the table to PATH as JSON")
    parser.add_argument("--optimizer", choices=list(OPTIMIZERS), action="append",
                        help="only this optimizer (repeatable; default: all)")
    parser.add_argument("--profile", choices=list(OPTIMIZERS), help="profile a full check of this optimizer on the "
                                                                     "first chosen model")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    models = {name: value for name, value in MODELS.items()
              if args.model == "both" or name.startswith(args.model.replace("k", " k").replace("M", " M"))}
    if args.profile:
        (sizes, batch), = list(models.values())[:1]
        step, watcher, _ = setup(sizes, batch, *OPTIMIZERS[args.profile], {})
        step()
        cProfile.runctx("for _ in range(5): step()", globals(), {"step": step}, "/tmp/bench_watch.prof")
        pstats.Stats("/tmp/bench_watch.prof").sort_stats("cumulative").print_stats(25)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32; median of {args.steps} steps")
    lines = ["| model | optimizer | step (ms) | full check (ms) | × | sample=0.01 (ms) | × | watcher peak / "
             "params+grads+state |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    print(*lines, sep="\n")
    rows = []
    for model_name, (sizes, batch) in models.items():
        for optimizer_name, (torch_class, kwargs) in OPTIMIZERS.items():
            if args.optimizer and optimizer_name not in args.optimizer:
                continue
            results = measure(sizes, batch, torch_class, kwargs, args.steps)
            plain = results["plain"][0]
            full, full_peak, size = results["full"]
            sampled = results["sample=0.01"][0]
            rows.append({"model": model_name, "optimizer": optimizer_name, "plain_ms": round(plain * 1e3, 1),
                         "full_ms": round(full * 1e3, 1), "full_ratio": round(full / plain, 2),
                         "sampled_ms": round(sampled * 1e3, 1), "sampled_ratio": round(sampled / plain, 2),
                         "peak_mib": round(full_peak / 2**20), "size_mib": round(size / 2**20)})
            row = rows[-1]
            lines.append(f"| {model_name} | {optimizer_name} | {row['plain_ms']:.1f} | {row['full_ms']:.1f} | "
                         f"{row['full_ratio']:.2f} | {row['sampled_ms']:.1f} | {row['sampled_ratio']:.2f} | "
                         f"{row['peak_mib']} / {row['size_mib']} MiB |")
            print(lines[-1], flush=True)
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"torch": torch.__version__, "threads": torch.get_num_threads(), "steps": args.steps,
                       "rows": rows, "table": "\n".join(lines)}, file, indent=1)


if __name__ == "__main__":
    main()
