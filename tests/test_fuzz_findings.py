"""What ``refwd validate --fuzz`` found, kept as cases: each failed before its fix and passes through the harness
against torch now (the Case literals are the fuzzer's shrunk reproducers).

- an RMSprop float16 run whose v = g² exceeds float16's range in torch (stored ∞) while the float64 reference
  stays finite: an overflowed intermediate is indeterminate in the error model (refwd_validation.tolerance);
- float16 Adam with ε = 1e-8 (0 in float16) and a dead ReLU unit: torch's params become NaN (0/0), and refwd's
  relu, written as where(z > 0, z, 0), turned the NaN into 0; refwd's relu is torch's threshold now;
- a bfloat16 ReLU pre-activation within its rounding error of 0, on the other side of the kink in torch: the
  error model of relu and its derivative covers both sides there;
- a float16 weight gradient whose partial sums overflow in torch (∞ − ∞ = NaN) while their float64 total is
  finite: a sum whose absolute terms exceed the dtype's range is indeterminate;
- float16 SGD with lr = 1e-6: torch holds the lr in float16, where it is subnormal (1.0133e-6, 27 u away): a
  coefficient's error model is its actual rounding error, not u;
- AdamW with β₁ = 0, maximize and a dead ReLU unit: exp_avg = lerp(+0.0, −0.0, 1) is −0.0 in torch's vector loop
  and +0.0 in its scalar tail; the sign of such a zero is not compared (docs/oracle.md, findings 9);
- an inf injected into the grad of a parameter that has none at that step: nothing to inject, in the twin as in
  the replay (the harness crashed);
- a 0-d parameter (a broadcast bias): refwd's rules gave back NumPy scalars, not 0-d arrays (the contract check);
  the shell gives back 0-d arrays;
- fused AdamW with lr·λ = 1: refwd's θ(1 − γλ) is exactly 0, the fused kernel's θ − γ(λθ) leaves u·|θ|; the error
  model of the decoupled shrink adds |ρθ| to that of (1 − ρ)θ, which covers both.
"""
import pytest

from refwd_validation.cases import Case

torch = pytest.importorskip("torch")

from refwd_validation.harness import run_case  # noqa: E402

pytestmark = pytest.mark.torch

FOUND = [
    Case(id="fuzz-1-rmsprop-f16-forloop-cpu", config="fuzz", optimizer="rmsprop",
         hyperparameters=(("lr", 0.01), ("maximize", True)), model=(1, 1),
         groups=(("weights", (("weight_decay", 0.0), ("lr", 0.5))), ("biases", (("weight_decay", 0.0), ("lr", 0.5)))),
         dtype="float16", steps=4, loss_scale=64.0, description="float16 v overflows in torch"),
    Case(id="fuzz-2-adam-f16-forloop-cpu", config="fuzz", optimizer="adam", hyperparameters=(("lr", 0.01),),
         model=(3, 1, 2), activation="relu", dtype="float16", steps=2, loss_scale=64.0, seed=312,
         description="torch's NaN params through a relu"),
    Case(id="fuzz-1-adam-bf16-forloop-cpu", config="fuzz", optimizer="adam", hyperparameters=(("lr", 0.01),),
         model=(5, 17, 33, 1), activation="relu", dtype="bfloat16", steps=1, loss_scale=64.0,
         description="a pre-activation at relu's kink"),
    Case(id="fuzz-1-sgd-f16-forloop-cpu", config="fuzz", optimizer="sgd", hyperparameters=(("lr", 0.01),),
         model=(3, 1, 2), activation="relu",
         groups=(("weights", (("weight_decay", 0.0), ("lr", 0.1))), ("biases", (("weight_decay", 0.0), ("lr", 0.01)))),
         dtype="float16", steps=3, loss_scale=64.0, description="a float16 partial sum overflows in torch"),
    Case(id="fuzz-1-sgd-f16-forloop-cpu", config="fuzz", optimizer="sgd",
         hyperparameters=(("lr", 0.01), ("maximize", True)), model=(3, 2),
         groups=(("weights", (("weight_decay", 0.0), ("lr", 0.1))), ("biases", (("weight_decay", 0.0), ("lr", 1e-06)))),
         dtype="float16", steps=3, loss_scale=64.0, batch=1, seed=171, description="a subnormal float16 lr"),
    Case(id="fuzz-5-adamw-f64-forloop-cpu", config="fuzz", optimizer="adamw",
         hyperparameters=(("lr", 0.01), ("betas", (0.0, 0.999)), ("maximize", True)), model=(3, 1, 2), activation="relu",
         groups=(("weights", (("weight_decay", 0.0), ("lr", 0.01))), ("biases", (("weight_decay", 0.0), ("lr", 1.5)))),
         steps=2, seed=1, description="a lerp weight of 1 and a -0.0 gradient"),
    Case(id="fuzz-3-sgd-f64-forloop-cpu", config="fuzz", optimizer="sgd", hyperparameters=(("lr", 0.01),), model=(1, 1),
         steps=1, grad_none=(("weight", (1,)),), inject=(("weight", 1, (0, 0), float("inf")),),
         description="an inf injected into a grad that is None"),
    Case(id="fuzz-1-adamw-f64-fused-cpu", config="fuzz", optimizer="adamw",
         hyperparameters=(("lr", 0.1), ("eps", 10.0), ("weight_decay", 10.0)), model=(1, 1), impl="fused", steps=1,
         description="decoupled decay with lr times weight_decay = 1"),    Case(id="fuzz-1-adam-f16-forloop-cpu", config="fuzz", optimizer="adam",
         hyperparameters=(("lr", 0.01), ("betas", (0.0, 0.999))), model=(6, 9, 1, 4), activation="sigmoid",
         dtype="float16", steps=2, loss_scale=64.0, description="float16 non-finite inputs: torch's overflows decide"),
    Case(id="fuzz-1-rmsprop-f32-forloop-cpu", config="fuzz", optimizer="rmsprop",
         hyperparameters=(("lr", 0.01), ("momentum", 0.9)), model=(3, 5, 1), dtype="float32", steps=3,
         scalar_bias=True, description="a 0-d param: refwd's rules gave back NumPy scalars"),
]


@pytest.mark.parametrize("case", FOUND, ids=[case.description for case in FOUND])
def test_a_fuzz_finding_passes_now(case):
    result = run_case(case)
    assert str(result.status) == "pass", result.detail


def test_torch_really_gives_nan_params_there():
    """The second finding is torch's arithmetic, not the harness's: after step 1 its params are NaN."""
    from refwd_validation.twin import torch_trajectory
    first = next(torch_trajectory(FOUND[1]))
    assert any(value != value for value in first.new_params["0.weight"].ravel())
