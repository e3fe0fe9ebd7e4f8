"""Check a torch training loop against refwd, step by step, while it trains.

Run from the repository root:  python docs/examples/watch_training.py

The watcher hooks into the optimizer (torch's step pre/post hooks): before each step it copies the params,
grads and optimizer state into refwd, after the step it compares torch's params and every state tensor with
refwd's step from the same numbers, in ULPs of the error scale (the harness's lock-step check). Nothing in the
loop itself changes.
"""
import torch

from refwd_validation.watch import WatchError, watch

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(8, 64), torch.nn.Tanh(), torch.nn.Linear(64, 1))
decay = [p for name, p in model.named_parameters() if name.endswith("weight")]
no_decay = [p for name, p in model.named_parameters() if name.endswith("bias")]
optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                               {"params": no_decay, "weight_decay": 0.0}], lr=3e-3)
scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=200)
x = torch.randn(512, 8)
y = torch.sin(x.sum(dim=1, keepdim=True))

# 1. Raise at the first step that disagrees (the way to use it in a test suite).
with watch(optimizer, model) as watcher:
    for step in range(200):
        batch = torch.randint(0, 512, (64,))
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x[batch]), y[batch])
        loss.backward()
        optimizer.step()
        scheduler.step()
print(f"loss {loss.item():.4f}; {watcher.summary()}")

# 2. What a wrong optimizer looks like: a post-step hook that nudges one weight, as a buggy kernel would.
def nudge(optimizer, args, kwargs):
    with torch.no_grad():
        model[2].weight[0, 5] *= 1.0001


handle = optimizer.register_step_post_hook(nudge)   # registered before the watcher, so it runs before it
try:
    with watch(optimizer, model):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
except WatchError as error:
    print(f"caught, as it should be:\n{error}")
finally:
    handle.remove()

# 3. Or log and go on: each mismatch is a warning on the "refwd_validation.watch" logger and kept in .mismatches.
