"""Plausible optimizer bugs, written as mutants of refwd's reference rules: the proof that the oracle can fail.

A harness that never fails proves nothing. Each :class:`Mutant` here is one bug that real optimizer code has
had or could easily have (a wrong beta in a bias correction, ε inside the square root, decay applied twice,
...), written as a small source edit of one of refwd's pure rules: exact ``old`` text → ``new`` text. The
edit is applied to the rule's own source (``inspect.getsource``) and the result is compiled in a copy of the
rule module's globals, so the math is never written twice and refwd itself is never touched. Every ``old``
text must occur exactly once in the rule's source: if the reference changes, the catalogue fails loudly
instead of silently testing nothing.

The mechanism (:class:`Mutant`, the edits compiled apart, :func:`cheapest_case`) is
:mod:`refwd_validation.mutation`. ``tests/test_mutants.py`` runs each mutant through the validation harness on cases of the matrix that have
the flags it needs and asserts that the harness reports a failure, and that the unmutated rules pass those
same cases. docs/mutants.md lists the catalogue with the check that catches each bug.

>>> rules = mutant("adam-bias-correction2-beta1").rules()   # {"adam": <mutated adam_step>, "adamw": partial}
"""
import itertools

from .mutation import LOCKSTEP, Mutant
from .outcomes import Check

def mutant(mutant_id):
    """The catalogue entry with this id."""
    for entry in MUTANTS:
        if entry.id == mutant_id:
            return entry
    raise KeyError(f"no mutant {mutant_id!r}; known: {[entry.id for entry in MUTANTS]}")


# Source fragments shared by several edits. The rule modules indent their trailing comments to a column, so
# an edit matches code only (not comments) wherever it can.
_SGD_MAXIMIZE_THEN_DECAY = """\
    if maximize:
        grad = -grad
    if weight_decay != 0:
        grad = grad + weight_decay * param"""
_SGD_DECAY_THEN_MAXIMIZE = """\
    if weight_decay != 0:
        grad = grad + weight_decay * param
    if maximize:
        grad = -grad"""
_SGD_NESTEROV = "grad = grad + momentum * momentum_buffer if nesterov else momentum_buffer"

_ADAM_DECAY = """\
    if weight_decay != 0:
        if decoupled_weight_decay:"""
_ADAM_DENOM = "denom = np.sqrt(second_moment) / bias_correction2 ** 0.5 + eps"            # torch's ε placement
_ADAM_SECOND_MOMENT = "second_moment = max_exp_avg_sq if amsgrad else exp_avg_sq"

MUTANTS = (
    # ---------------------------------------------------------------- SGD
    Mutant(
        "sgd-dampening-first-step", ("sgd",),
        "Dampening applied on the first momentum step, b₁ = (1−τ)g₁, as a buffer that starts at zero does "
        "(torch copies the first gradient undamped).",
        (("momentum_buffer = grad.copy()", "momentum_buffer = (1 - dampening) * grad"),),
        needs={"momentum": True, "dampening": True},
        caught_by=(LOCKSTEP,)),
    Mutant(
        "sgd-dampening-not-complemented", ("sgd",),
        "Dampening used as the gradient's weight, b = μb + τg, instead of (1−τ).",
        (("(1 - dampening) * grad", "dampening * grad"),),
        needs={"momentum": True, "dampening": True},
        caught_by=(LOCKSTEP,)),
    Mutant(
        "sgd-momentum-as-ema", ("sgd",),
        "Momentum written as an exponential moving average, b = μb + (1−μ)g (the convention of some other "
        "frameworks), so the effective step is (1−μ) times torch's.",
        (("(1 - dampening) * grad", "(1 - momentum) * grad"),),
        needs={"momentum": True}),
    Mutant(
        "sgd-momentum-buffer-not-stored", ("sgd",),
        "The updated momentum buffer is never written back to the state, so every step is a first step.",
        (('        new_state["momentum_buffer"] = momentum_buffer\n', ""),),
        needs={"momentum": True}),
    Mutant(
        "sgd-lr-inside-buffer", ("sgd",),
        "Velocity with the lr folded in, v = μv + γg, θ −= v (Sutskever's form): equal to torch's only while "
        "the lr is constant; torch's buffer excludes lr, so a new lr rescales the whole velocity.",
        (("momentum_buffer = grad.copy()", "momentum_buffer = lr * grad"),
         ("(1 - dampening) * grad", "(1 - dampening) * lr * grad"),
         (f"        {_SGD_NESTEROV}\n",
          "        return param - (lr * grad + momentum * momentum_buffer if nesterov else momentum_buffer), "
          "new_state\n")),
        needs={"momentum": True}),
    Mutant(
        "sgd-nesterov-old-buffer", ("sgd",),
        "Nesterov's look-ahead taken with the previous buffer, g + μb_{t−1}, instead of the updated b_t.",
        ((_SGD_NESTEROV,
          'grad = grad + momentum * state.get("momentum_buffer", 0 * grad) if nesterov else momentum_buffer'),),
        needs={"nesterov": True}),
    Mutant(
        "sgd-nesterov-ignored", ("sgd",),
        "The nesterov flag is accepted but not passed on: classical momentum runs instead.",
        ((_SGD_NESTEROV, "grad = momentum_buffer"),),
        needs={"nesterov": True}),
    Mutant(
        "sgd-decay-after-momentum", ("sgd",),
        "Coupled weight decay added to the update after the momentum buffer, so λθ never enters the buffer.",
        ((_SGD_MAXIMIZE_THEN_DECAY, "    if maximize:\n        grad = -grad"),
         ("        param = param - lr * grad",
          "        if weight_decay != 0:\n            grad = grad + weight_decay * param\n"
          "        param = param - lr * grad")),
        needs={"momentum": True, "weight_decay": True}),
    Mutant(
        "sgd-decay-without-lr", ("sgd",),
        "Weight decay as a direct shrink θ ← (1−λ)θ, not scaled by lr and not entering the momentum.",
        (("grad = grad + weight_decay * param", "param = param * (1 - weight_decay)"),),
        needs={"weight_decay": True}),
    Mutant(
        "sgd-maximize-negates-decay", ("sgd",),
        "maximize negates the gradient after weight decay was added, so decay pushes weights away from 0.",
        ((_SGD_MAXIMIZE_THEN_DECAY, _SGD_DECAY_THEN_MAXIMIZE),),
        needs={"maximize": True, "weight_decay": True},
        caught_by=(LOCKSTEP,)),
    Mutant(
        "sgd-maximize-ignored", ("sgd",),
        "The maximize flag is accepted but ignored: the optimizer descends.",
        (("        grad = -grad\n", "        pass\n"),),
        needs={"maximize": True},
        caught_by=(LOCKSTEP,)),

    # ---------------------------------------------------------------- RMSprop
    Mutant(
        "rmsprop-eps-inside-sqrt", ("rmsprop",),
        "ε inside the square root, √(v+ε), as TensorFlow's RMSprop has it (torch adds ε after the root).",
        (("avg = np.sqrt(square_avg) + eps", "avg = np.sqrt(square_avg + eps)"),),
        needs={"centered": False},
        caught_by=(LOCKSTEP,)),
    Mutant(
        "rmsprop-alpha-swapped", ("rmsprop",),
        "α and 1−α swapped in the square average: v = (1−α)v + αg².",
        (("alpha * square_avg + (1 - alpha) * grad * grad", "(1 - alpha) * square_avg + alpha * grad * grad"),)),
    Mutant(
        "rmsprop-bias-corrected", ("rmsprop",),
        "An Adam-style bias correction v/(1−αᵗ) slipped into RMSprop, which has none.",
        (("avg = np.sqrt(square_avg) + eps", "avg = np.sqrt(square_avg / (1 - alpha ** step)) + eps"),),
        needs={"centered": False},
        caught_by=(LOCKSTEP,)),
    Mutant(
        "rmsprop-centered-no-square", ("rmsprop",),
        "Centered RMSprop subtracting the mean gradient itself, √(v − ḡ), instead of its square.",
        (("np.sqrt(square_avg - grad_avg * grad_avg)", "np.sqrt(square_avg - grad_avg)"),),
        needs={"centered": True}),
    Mutant(
        "rmsprop-centered-stale-mean", ("rmsprop",),
        "Centered RMSprop using the previous step's mean gradient ḡ_{t−1} in √(v_t − ḡ²).",
        (("np.sqrt(square_avg - grad_avg * grad_avg)",
          'np.sqrt(square_avg - state.get("grad_avg", 0 * grad) ** 2)'),),
        needs={"centered": True}),
    Mutant(
        "rmsprop-lr-inside-buffer", ("rmsprop",),
        "The momentum buffer accumulates γg/d (TensorFlow's form) and θ −= b: equal to torch's only while "
        "the lr is constant, and the stored buffer is γ times torch's.",
        (("+ grad / avg", "+ lr * grad / avg"),
         ("param = param - lr * momentum_buffer", "param = param - momentum_buffer")),
        needs={"momentum": True}),
    Mutant(
        "rmsprop-square-avg-without-decay", ("rmsprop",),
        "The square average built from the raw gradient, before coupled weight decay was added to it.",
        (("        grad = -grad\n", "        grad = -grad\n    raw_grad = grad\n"),
         ("(1 - alpha) * grad * grad", "(1 - alpha) * raw_grad * raw_grad")),
        needs={"weight_decay": True}),
    Mutant(
        "rmsprop-maximize-negates-decay", ("rmsprop",),
        "maximize negates the gradient after weight decay was added, so decay pushes weights away from 0.",
        ((_SGD_MAXIMIZE_THEN_DECAY, _SGD_DECAY_THEN_MAXIMIZE),),
        needs={"maximize": True, "weight_decay": True},
        caught_by=(LOCKSTEP,)),

    # ---------------------------------------------------------------- Adam and AdamW (one rule)
    Mutant(
        "adam-betas-swapped", ("adam", "adamw"),
        "betas unpacked in the wrong order: β₂ drives the first moment and β₁ the second.",
        (("beta1, beta2 = betas", "beta2, beta1 = betas"),)),
    Mutant(
        "adam-bias-correction2-beta1", ("adam", "adamw"),
        "The second moment's bias correction written with β₁: 1−β₁ᵗ in place of 1−β₂ᵗ.",
        (("bias_correction2 = 1 - beta2 ** step", "bias_correction2 = 1 - beta1 ** step"),)),
    Mutant(
        "adam-bias-correction1-beta2", ("adam", "adamw"),
        "The first moment's bias correction written with β₂: 1−β₂ᵗ in place of 1−β₁ᵗ.",
        (("bias_correction1 = 1 - beta1 ** step", "bias_correction1 = 1 - beta2 ** step"),)),
    Mutant(
        "adam-no-bias-correction", ("adam", "adamw"),
        "No bias correction at all (RMSprop with momentum, in effect): early steps are far too small.",
        (("bias_correction1 = 1 - beta1 ** step", "bias_correction1 = 1.0"),
         ("bias_correction2 = 1 - beta2 ** step", "bias_correction2 = 1.0"))),
    Mutant(
        "adam-no-bias-correction2", ("adam", "adamw"),
        "Only the first moment is bias-corrected; v is used raw.",
        (("bias_correction2 = 1 - beta2 ** step", "bias_correction2 = 1.0"),)),
    Mutant(
        "adam-step-size-times-correction", ("adam", "adamw"),
        "The step size multiplies by the first bias correction instead of dividing, γ(1−β₁ᵗ).",
        (("step_size = lr / bias_correction1", "step_size = lr * bias_correction1"),),
        needs={"beta1_nonzero": True}),
    Mutant(
        "adam-step-off-by-one", ("adam", "adamw"),
        "The step counter starts at 1 and is incremented before use, so the first bias correction uses t=2.",
        (('step = state.get("step", 0) + 1', 'step = state.get("step", 1) + 1'),)),
    Mutant(
        "adam-step-shared-by-tensors", ("adam", "adamw"),
        "One step counter for all tensors, incremented per tensor update (an optimizer-level `self.t += 1` "
        "inside the per-parameter loop), so bias corrections use the wrong t.",
        (('step = state.get("step", 0) + 1', "step = next(calls)"),),
                fresh=(("calls", lambda: itertools.count(1)),)),
    Mutant(
        "adam-step-per-optimizer", ("adam", "adamw"),
        "The step count kept per optimizer, not per parameter: a parameter whose grad was None for some "
        "steps gets the optimizer's t in its bias corrections (torch counts each parameter's own steps).",
        (('step = state.get("step", 0) + 1',
          'step = optimizer_step[0] = max(optimizer_step[0], state.get("step", 0) + 1)'),),
        needs={"late_grad": True},
        fresh=(("optimizer_step", lambda: [0]),),
        caught_by=(LOCKSTEP,)),
    Mutant(
        "adam-exp-avg-sq-abs", ("adam", "adamw"),
        "The second moment accumulates the absolute gradient abs(g) instead of g².",
        (("(1 - beta2) * grad * grad", "(1 - beta2) * abs(grad)"),)),
    Mutant(
        "adam-eps-inside-sqrt", ("adam", "adamw"),
        "ε inside the square root, √(v̂+ε).",
        ((_ADAM_DENOM, "denom = np.sqrt(second_moment / bias_correction2 + eps)"),),
        needs={"amsgrad": False}),
    Mutant(
        "adam-eps-hat", ("adam", "adamw"),
        "ε added before the division by √(1−β₂ᵗ): the paper's ε̂ form that TensorFlow and Keras use, "
        "(√v+ε)/√(1−β₂ᵗ), not torch's √v/√(1−β₂ᵗ)+ε.",
        ((_ADAM_DENOM, "denom = (np.sqrt(second_moment) + eps) / bias_correction2 ** 0.5"),),
        needs={"amsgrad": False}),
    Mutant(
        "adam-maximize-ignored", ("adam", "adamw"),
        "The maximize flag is accepted but ignored: the optimizer descends.",
        (("        grad = -grad\n", "        pass\n"),),
        needs={"maximize": True},
        caught_by=(LOCKSTEP,)),
    Mutant(
        "adam-maximize-negates-decay", ("adam",),
        "maximize negates the gradient after coupled weight decay was added, so decay pushes weights away "
        "from 0.",
        (("    if maximize:\n        grad = -grad\n", ""),
         ("            grad = grad + weight_decay * param",
          "            grad = grad + weight_decay * param\n    if maximize:\n        grad = -grad")),
        needs={"maximize": True, "weight_decay": True, "decoupled_weight_decay": False},
        caught_by=(LOCKSTEP,)),
    Mutant(
        "adam-coupled-decay-as-decoupled", ("adam",),
        "Adam's weight_decay applied as a decoupled shrink (AdamW's) instead of L2 added to the gradient.",
        ((_ADAM_DECAY, "    if weight_decay != 0:\n        if True:"),),
        needs={"weight_decay": True, "decoupled_weight_decay": False},
        caught_by=(LOCKSTEP,)),
    Mutant(
        "adamw-decay-coupled", ("adamw",),
        "AdamW's decay added to the gradient as L2 (Adam's), the very bug the AdamW paper describes.",
        ((_ADAM_DECAY, "    if weight_decay != 0:\n        if False:"),),
        needs={"weight_decay": True}),
    Mutant(
        "adamw-decay-not-scaled-by-lr", ("adamw",),
        "Decoupled decay θ ← (1−λ)θ, not scaled by the lr (the paper's schedule multiplier taken as 1).",
        (("param = param * (1 - rate)", "param = param * (1 - weight_decay)"),),
        needs={"weight_decay": True}),
    Mutant(
        "adamw-decay-after-update", ("adamw",),
        "Decoupled decay applied after the Adam update, to the new θ, instead of to θ_{t−1} before it.",
        (("param = param * (1 - rate)", "pass"),
         ("    param = param - step_size * exp_avg / denom",
          "    param = param - step_size * exp_avg / denom\n"
          "    if weight_decay != 0 and decoupled_weight_decay:\n"
          "        param = param * (1 - lr * weight_decay)")),
        needs={"weight_decay": True}),
    Mutant(
        "adamw-decay-twice", ("adamw",),
        "Weight decay applied both ways: the decoupled shrink and L2 added to the gradient.",
        (("        else:\n            grad = grad + weight_decay * param",
          "        grad = grad + weight_decay * param"),),
        needs={"weight_decay": True}),
    Mutant(
        "amsgrad-max-of-corrected", ("adam", "adamw"),
        "amsgrad takes the max over bias-corrected v̂ = v/(1−β₂ᵗ) (and stores it) instead of over raw v.",
        (("np.maximum(state.get(\"max_exp_avg_sq\", np.zeros_like(param)), exp_avg_sq)",
          "np.maximum(state.get(\"max_exp_avg_sq\", np.zeros_like(param)), exp_avg_sq / bias_correction2)"),
         (_ADAM_DENOM, "denom = np.sqrt(second_moment) + eps if amsgrad else "
                       "np.sqrt(second_moment) / bias_correction2 ** 0.5 + eps")),
        needs={"amsgrad": True}),
    Mutant(
        "amsgrad-max-with-previous-v", ("adam", "adamw"),
        "amsgrad's max taken with the previous v, max(v_{t−1}, v_t), instead of the running max (state keys "
        "mixed up).",
        (("state.get(\"max_exp_avg_sq\", np.zeros_like(param))", "state.get(\"exp_avg_sq\", np.zeros_like(param))"),),
        needs={"amsgrad": True}),
    Mutant(
        "amsgrad-max-unused", ("adam", "adamw"),
        "amsgrad's running max is kept in the state but the denominator still uses v.",
        ((_ADAM_SECOND_MOMENT, "second_moment = exp_avg_sq"),),
        needs={"amsgrad": True}),
)

# ---------------------------------------------------------------- contracts (right values, broken rule)
CONTRACT_MUTANTS = (
    Mutant(
        "adam-state-init-float64", ("adam", "adamw"),
        "The first moment initialised with np.zeros(param.shape), not np.zeros_like(param): float64 for a "
        "float32 param, and with it the new param, a few float32 ulps from torch's value and float64 from "
        "the second step on.",
        (('state.get("exp_avg", np.zeros_like(param))', 'state.get("exp_avg", np.zeros(param.shape))'),),
        needs={"float32": True},
        caught_by=(LOCKSTEP,), contract="dtype"),
    Mutant(
        "sgd-momentum-in-place", ("sgd",),
        "torch's in-place buf.mul_(momentum).add_(grad, alpha=1 - dampening) transcribed to NumPy as "
        "`previous *= momentum; previous += ...`: the caller's state changes under its feet.",
        (("momentum_buffer = momentum * previous + (1 - dampening) * grad",
          "previous *= momentum\n            previous += (1 - dampening) * grad\n"
          "            momentum_buffer = previous"),),
        needs={"momentum": True},
        caught_by=(LOCKSTEP,), contract="inputs"),
    Mutant(
        "sgd-momentum-buffer-is-grad", ("sgd",),
        "The first momentum buffer stored as the gradient itself, `momentum_buffer = grad`, not a copy: the "
        "state aliases the caller's gradient, which a training loop overwrites or zeroes in place.",
        (("momentum_buffer = grad.copy()", "momentum_buffer = grad"),),
        needs={"momentum": True, "maximize": False, "weight_decay": False},
        caught_by=(LOCKSTEP,), contract="aliasing"),
)

# ---------------------------------------------------------------- the matrix's generated parts (issue: a sharper oracle)
# One bug for each kind of case the hand-picked matrix lacked: each shows only there.
MATRIX_MUTANTS = (
    Mutant(
        "sgd-maximize-needs-momentum", ("sgd",),
        "maximize honoured only on the momentum path: plain SGD(maximize=True) descends. A flag combination the "
        "hand-picked matrix never built (maximize was only ever tried with momentum).",
        (("    if maximize:\n        grad = -grad", "    if maximize and momentum != 0:\n        grad = -grad"),),
        needs={"maximize": True, "momentum": False}, caught_by=(LOCKSTEP,)),
    Mutant(
        "adam-default-lr", ("adam",),
        "Adam's default lr copied from RMSprop's (1e-2, not 1e-3): invisible to every case that passes an lr.",
        (), needs={"defaults": True}, caught_by=(LOCKSTEP,), defaults=(("lr", 1e-2),)),
    Mutant(
        "adam-step-count-bfloat16", ("adam", "adamw"),
        "The step count kept in bfloat16, as a kernel that stores it in the param's dtype: 256 + 1 rounds to "
        "256, so the count stops at 256 and the bias corrections with it.",
        (("step = state.get(\"step\", 0) + 1", "step = int(_bfloat16(state.get(\"step\", 0) + 1))"),),
        needs={"long_run": True}, caught_by=(LOCKSTEP,), fresh=(("_bfloat16", lambda: _ml_dtypes().bfloat16),)),
    Mutant(
        "adam-amsgrad-fmax", ("adam", "adamw"),
        "amsgrad's running max taken with np.fmax, which drops a NaN, where torch's maximum propagates it: "
        "the same numbers on every finite gradient.",
        (("max_exp_avg_sq = np.maximum(", "max_exp_avg_sq = np.fmax("),),
        needs={"amsgrad": True, "nonfinite": True}, caught_by=(LOCKSTEP,)),
    Mutant(
        "load-state-dict-sorted-names", ("adam",),
        "load_state_dict pairs a group's saved indices with its parameters sorted by name (as a dict keyed by name "
        "would give them), not in the group's order: 2.weight and 2.bias swap states.",
        (("name_of.update(zip(saved[\"params\"], group[\"params\"]))",
          "name_of.update(zip(saved[\"params\"], sorted(group[\"params\"])))"),),
        needs={"round_trip": True}, caught_by=(Check.STATE_DICT,), method="load_state_dict"),
    Mutant(
        "sgdw-paper-convention-ignored", ("sgdw",),
        "SGDW shrinks by γλ whatever the decay convention: the paper's η_tλ (γ/γ₀·λ) is never used.",
        (("decay_convention=decay_convention,", "decay_convention=\"torch\","),),
        needs={"paper_convention": True, "weight_decay": True}, caught_by=(LOCKSTEP,)),
    Mutant(
        "rmsprop-accepts-negative-eps", ("rmsprop",),
        "RMSprop's constructor without its ε check: a negative ε is accepted (and NaN steps follow) where "
        "torch raises ValueError.",
        (("    if not 0.0 <= eps:\n        raise ValueError(f\"Invalid epsilon value: {eps}\")\n", ""),),
        needs={"constructor": True}, caught_by=(Check.CONSTRUCTOR,), method="__init__"),
)
MUTANTS = MUTANTS + CONTRACT_MUTANTS + MATRIX_MUTANTS


def _ml_dtypes():
    import ml_dtypes   # the validation side's dependency: bfloat16 rounding
    return ml_dtypes

MUTANT_IDS = tuple(entry.id for entry in MUTANTS)
assert len(set(MUTANT_IDS)) == len(MUTANT_IDS), "mutant ids must be unique"
