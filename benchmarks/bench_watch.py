"""Measure the watcher's overhead per optimizer step: ``python benchmarks/bench_watch.py``.

For each optimizer and model size, times a training step (forward, backward, optimizer.step) without and with a
:class:`refwd_validation.watch.Watcher` attached, and prints the median per-step times and the difference. Not a
test: timings depend on the machine, so nothing here asserts a figure.
"""
import argparse
import statistics
import time

import torch

from refwd_validation.watch import watch

MODELS = {"small (4-32-1, 193 params)": (4, 32, 1), "medium (64-256-256-10, 85 k params)": (64, 256, 256, 10)}
OPTIMIZERS = {"SGD momentum": (torch.optim.SGD, dict(lr=0.01, momentum=0.9)),
              "RMSprop centered": (torch.optim.RMSprop, dict(lr=1e-3, centered=True, momentum=0.5)),
              "Adam amsgrad": (torch.optim.Adam, dict(lr=1e-3, amsgrad=True)),
              "AdamW": (torch.optim.AdamW, dict(lr=1e-3))}


def mlp(sizes):
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(torch.nn.Tanh())
    return torch.nn.Sequential(*layers)


def step_times(sizes, torch_class, kwargs, steps, watched):
    torch.manual_seed(0)
    model = mlp(sizes)
    optimizer = torch_class(model.parameters(), **kwargs)
    x, y = torch.randn(64, sizes[0]), torch.randn(64, sizes[-1])
    watcher = watch(optimizer, model) if watched else None
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
        times.append(time.perf_counter() - started)
    if watcher is not None:
        watcher.detach()
        assert not watcher.mismatches, watcher.summary()
    return statistics.median(times[2:])  # the first steps create the state


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args(argv)
    step_times(MODELS["small (4-32-1, 193 params)"], torch.optim.SGD, {}, 5, watched=True)  # warm up torch and NumPy
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; median of {args.steps - 2} steps")
    print("| model | optimizer | step (ms) | watched step (ms) | overhead (ms) | × |")
    print("|---|---|---:|---:|---:|---:|")
    for model_name, sizes in MODELS.items():
        for optimizer_name, (torch_class, kwargs) in OPTIMIZERS.items():
            plain = step_times(sizes, torch_class, kwargs, args.steps, watched=False)
            watched = step_times(sizes, torch_class, kwargs, args.steps, watched=True)
            print(f"| {model_name} | {optimizer_name} | {plain * 1e3:.3f} | {watched * 1e3:.3f} | "
                  f"{(watched - plain) * 1e3:.3f} | {watched / plain:.1f} |")


if __name__ == "__main__":
    main()
