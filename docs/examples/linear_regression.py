"""The seeds' first script, in refwd: fit y = 2x + 1 with one Linear(1, 1) layer.

Four points x = 1..4 (a column, shape (4, 1)), the MSE loss, SGD with lr 0.1 and coupled weight decay 0.01,
ten epochs of one full-batch step each. The initial weight and bias are drawn with a fixed seed, so every run
prints the same numbers; torch gives the same ones from the same initial values (tests/test_examples.py checks).

Run: python docs/examples/linear_regression.py
"""
import numpy as np

import refwd

x = np.arange(1.0, 5.0).reshape(4, 1)                     # x = 1, 2, 3, 4
y = 2 * x + 1                                             # the line to recover: weight 2, bias 1

model = refwd.Linear(1, 1)
params = model.init(seed=0)                               # {"weight": (1, 1), "bias": (1,)}, float64
optimizer = refwd.optim.SGD(params, lr=0.1, weight_decay=0.01)
loss_and_grad = refwd.value_and_grad(lambda p: refwd.mse(model(p, x), y))

for epoch in range(1, 11):
    loss, grads = loss_and_grad(params)                   # the loss before this epoch's step
    params = optimizer.step(params, grads)
    print(f"epoch {epoch:2d}  loss {loss:.6f}")

print(f"weight {params['weight'][0, 0]:.6f}  bias {params['bias'][0]:.6f}")
