"""Take a torch model and optimizer in the middle of training, step both torch and refwd on one batch, and
report their agreement per parameter.

Run from the repository root:  python docs/examples/mid_training_check.py

The recipe of docs/interop.md: (1) restore the model and optimizer from a checkpoint as usual; (2) convert them
to refwd (params and the optimizer with its state, hyperparameters and param groups); (3) compute torch's
gradients on one batch and give the same gradients to both; (4) step both and compare, per parameter and state
key, in ULPs of the error scale (refwd_validation.tolerance, the harness's lock-step check).
"""
import io

import numpy as np
import torch

from refwd_validation import interop, tolerance
from refwd_validation.compare import Check, Comparer
from refwd_validation.optimizers import OPTIMIZERS
from refwd_validation.watch import watch

# --- 0. Something that has been training for a while, saved as a checkpoint --------------------------------------
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
optimizer = torch.optim.Adam([{"params": [model[0].weight, model[2].weight], "weight_decay": 1e-2},
                              {"params": [model[0].bias, model[2].bias], "lr": 3e-4}], lr=1e-3, amsgrad=True)
x, y = torch.randn(256, 10), torch.randn(256, 3)
for step in range(300):
    optimizer.zero_grad()
    torch.nn.functional.mse_loss(model(x[step % 8::8]), y[step % 8::8]).backward()
    optimizer.step()
buffer = io.BytesIO()
torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, buffer)

# --- 1. Restore it, as a training script resuming would --------------------------------------------------------
buffer.seek(0)
checkpoint = torch.load(buffer, weights_only=True)
model = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
model.load_state_dict(checkpoint["model"])
optimizer = torch.optim.Adam([{"params": [model[0].weight, model[2].weight]},
                              {"params": [model[0].bias, model[2].bias]}], lr=1e-3, amsgrad=True)
optimizer.load_state_dict(checkpoint["optimizer"])       # hyperparameters and state come from the checkpoint

# --- 2. The same optimizer in refwd: hyperparameters, groups by parameter name, state (step as an int) -----------
reference = interop.optimizer_from_torch(optimizer, model)
params = interop.params_from_torch(model)
print(reference)
print(f"state of '0.weight': step {reference.state['0.weight']['step']}, keys {sorted(reference.state['0.weight'])}")

# --- 3. One batch; torch's gradients go to both, so only the optimizers are compared ----------------------------
optimizer.zero_grad()
torch.nn.functional.mse_loss(model(x[:32]), y[:32]).backward()
grads = interop.grads_from_torch(model)

# --- 4. Step both and compare --------------------------------------------------------------------------------------
state_before = {name: dict(state) for name, state in reference.state.items()}
new_params = reference.step(params, grads)
optimizer.step()
torch_params = interop.params_from_torch(model)                # torch's params and state, converted the same way
torch_state = interop.optimizer_from_torch(optimizer, model).state
comparer = Comparer("float32")                                 # refwd's one comparer, as the harness uses it
print("\n| parameter | key | max |refwd − torch| | ULPs of the error scale | budget |")
print("|---|---|---:|---:|---:|")
for group in reference.param_groups:
    hyperparameters = {key: group[key] for key in reference.defaults}
    for name in group["params"]:
        # the error scale of this parameter's step: how far two correct evaluations may differ, per element
        scales = tolerance.step_scales(OPTIMIZERS["adam"].error_scale_rule, params[name], grads[name],
                                       state_before[name], hyperparameters, params[name].dtype.name)
        torch_values = {"param": torch_params[name], **torch_state[name]}
        refwd_values = {"param": new_params[name], **reference.state[name]}
        for key in refwd_values:
            if key == "step":
                comparer.compare_count(Check.LOCKSTEP, 1, name, refwd_values[key], torch_values[key])
                continue
            worst = comparer.measure(Check.LOCKSTEP, 1, name, key, refwd_values[key], torch_values[key], scales[key])
            difference = np.max(np.abs(refwd_values[key] - torch_values[key]))
            print(f"| {name} | {key} | {difference:.3g} | {worst.ulps:.3f} | {worst.budget:g} |")
assert not comparer.mismatches and all(worst.ulps <= 2 for worst in comparer.worst.values())

# --- The same check in three lines, with the watcher, for the next step -------------------------------------------
with watch(optimizer, model) as watcher:      # raises WatchError with the pinpoint if a step disagrees
    optimizer.zero_grad()
    torch.nn.functional.mse_loss(model(x[32:64]), y[32:64]).backward()
    optimizer.step()
print("\nnext step, by the watcher:", {name: {key: round(ulps, 3) for key, ulps in keys.items()}
                                      for name, keys in watcher.agreement.items()})
