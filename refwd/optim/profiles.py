r"""Which conventions each library's optimizers follow, as keyword arguments of refwd's rules: data only.

``PROFILES[profile][rule_key]`` is a dict of convention keywords for that rule, so
``functools.partial(rule, **PROFILES[profile][rule_key])`` is that library's optimizer, written as refwd's
rule (and ``functools.partial(tolerance.<rule_key>, **PROFILES[profile][rule_key])`` its error model in the
harness). Rule keys: "sgd" (:func:`~refwd.optim.sgd.sgd_step`), "rmsprop", "adam", "adamw" (Adam's rule
with ``decoupled_weight_decay=True``), "sgdw", "rmspropw". An empty dict means "as torch". **A rule key absent
from a profile means that library has no such optimizer** (asking for it is a KeyError, not a silent torch).

The keywords (torch's value first; see :mod:`refwd.optim.conventions` and the rules' docstrings):

- ``eps_placement``: "after_root" √v̂ + ε | "inside_root" √(v̂ + ε) | "hat" γ√(1−β₂ᵗ)/(1−β₁ᵗ)·m/(√v + ε̂)
  | "floor" max(√v̂, ε). RMSprop takes the first two (it has no bias correction, so "hat" would be "after").
- ``lr_placement``: "outside_momentum" b ← μb + g, θ ← θ − γb | "in_momentum" b ← μb + γg, θ ← θ − b
  (SGD and RMSprop with momentum). The two agree while γ is constant.
- ``momentum_init``: "first_grad" b₁ = g₁ | "zero" b₀ = 0, so b₁ = (1 − τ)g₁ (SGD; equal without dampening).
- ``initial_square_avg``: RMSprop's v₀, 0.0 | 1.0.
- ``decay_convention``: decoupled decay θ ← (1 − ρ)θ with ρ = "torch" γλ | "paper" η_tλ = (γ/γ₀)λ
  | "independent" λ (AdamW, SGDW, RMSpropW; "paper" needs ``initial_lr`` γ₀ among the hyperparameters).

Hyperparameters a library holds in float32 even for float64 weights are not a line of any rule:
:data:`FLOAT32_HYPERPARAMETERS` names them per profile, and the caller rounds them with
:func:`refwd.optim.rounding.hyperparameters_in_float32` before calling the rule.

What each library computes (read in its source; "ran" means checked against the library by tests/test_profiles.py)
------------------------------------------------------------------------------------------------------------------
torch 2.13 (``torch/optim/*.py``, ``_single_tensor_*``): the defaults of every keyword; no SGDW or RMSpropW, but
    refwd's decoupled rules with torch's conventions are what an AdamW-style decay on SGD/RMSprop would be.

optax 0.2.8 (``optax/_src/alias.py``, ``transform.py``, ``transforms/_accumulation.py``; ran, float64):
    - ``sgd``: ``trace(momentum, nesterov)`` (b ← g + μb from zeros; Nesterov g + μb) then
      ``scale_by_learning_rate``: lr outside, buffer from zero. optax has no dampening, so the init is moot.
    - ``rmsprop``: ``scale_by_rms`` (or ``scale_by_stddev`` if centered) with ``eps_in_sqrt=True``:
      g·rsqrt(v + ε), resp. g·rsqrt(v − ḡ² + ε); then ``scale_by_learning_rate``, then ``trace(momentum)``:
      γ inside the buffer. ``initial_scale`` (default 0) is v₀.
    - ``adam``: m̂/(√(v̂ + eps_root) + ε) with ``eps_root=0``: torch's placement.
    - ``adamw``: ``scale_by_adam``, ``add_decayed_weights(λ)``, ``scale_by_learning_rate``: the step
      γ(m̂/(√v̂+ε) + λθ), torch's γλ in exact arithmetic.
    - no SGDW or RMSpropW alias (``chain`` can build them; not profiled).
    Hyperparameters are Python floats (weakly typed): none held in float32.

Keras 3.15 (``keras/src/optimizers/{sgd,rmsprop,adam,adamw,base_optimizer}.py``; ran with the JAX backend):
    - ``SGD``: m ← μm − γg from zeros, θ ← θ + m (Nesterov: θ ← θ + μm − γg): γ inside, buffer from zero;
      no dampening. ``weight_decay`` (any optimizer, base class ``_apply_weight_decay``) is decoupled,
      θ ← θ − θλγ before the update: "sgdw", "rmspropw", "adamw" with torch's γλ.
    - ``RMSprop``: v from zeros; d = √(v + ε) (centered √(v − ḡ² + ε)); increment γg/d; with momentum
      m ← μm + increment, θ ← θ − m: ε inside, γ inside.
    - ``Adam``/``AdamW``: α = γ√(1−β₂ᵗ)/(1−β₁ᵗ), θ ← θ − m·α/(√v + ε̂): "hat" (amsgrad: max of raw v, as torch).
    - coupled L2 is a loss term (``regularizers.L2(l2)`` adds 2·l2·θ to the gradient): rules "sgd", "rmsprop",
      "adam" with weight_decay = 2·l2.
    - ``learning_rate`` is a ``backend.Variable`` of dtype ``floatx()`` (float32) cast to the weight's dtype
      at each step: for float64 weights, γ is ↓₃₂γ (in the update and in the decay). β's, μ, ρ, ε and λ are
      Python floats cast to the weight's dtype. The step t in Keras's bias corrections is the optimizer's
      ``iterations``, not a per-parameter count (a state mapping matter, not a rule convention).

TensorFlow 1 ``tf.compat.v1.train.RMSPropOptimizer`` (``tensorflow/python/training/rmsprop.py`` and the
``ApplyRMSProp`` kernel, from memory of the source, **not run**: TensorFlow is not installed here):
    the "rms" slot starts at **ones**, "momentum" at zeros; mom ← μ·mom + γg/√(ms + ε), θ ← θ − mom (also
    with μ = 0); centered: √(ms − mg² + ε). ``_prepare`` converts lr, decay, momentum and epsilon with
    ``convert_to_tensor`` (float32 for Python floats) and ``_apply_dense`` casts them to the variable's dtype.
    The same v₀ = 1 and ε-inside form are optax's ``rmsprop(initial_scale=1.0)``, which the tests run.

"paper": each optimizer as its paper's algorithm box writes it.
    - "sgd": Sutskever et al. 2013, eq. (1)-(2): v ← μv − εg, θ ← θ + v from v₀ = 0 (γ inside). Their
      Nesterov (eq. 3-4) takes g at θ + μv; refwd's ``nesterov`` is torch's and Keras's reformulation of it.
    - "rmsprop": Graves 2013, eqs. (38)-(41): Δ ← ℶΔ − ℷg/√(n − ḡ² + ℸ): ε inside, γ inside (Hinton's
      lecture 6e has neither ε nor momentum).
    - "adam": Kingma & Ba, Algorithm 1: m̂/(√v̂ + ε), torch's placement (their §2 mentions the ε̂ form).
    - "adamw": Loshchilov & Hutter, Algorithm 2: η_tλθ, ε after the root.
    - "sgdw": Loshchilov & Hutter, Algorithm 1: m ← β₁m + η_tαg from m₀ = 0, θ ← θ − m − η_tλθ.
    - no "rmspropw": no paper writes it.
"""

PROFILES = {
    "torch": {"sgd": {}, "rmsprop": {}, "adam": {}, "adamw": {}, "sgdw": {}, "rmspropw": {}},
    "optax": {
        "sgd": {"momentum_init": "zero"},
        "rmsprop": {"eps_placement": "inside_root", "lr_placement": "in_momentum"},
        "adam": {},
        "adamw": {},
    },
    "keras": {
        "sgd": {"lr_placement": "in_momentum", "momentum_init": "zero"},
        "rmsprop": {"eps_placement": "inside_root", "lr_placement": "in_momentum"},
        "adam": {"eps_placement": "hat"},
        "adamw": {"eps_placement": "hat"},
        "sgdw": {"lr_placement": "in_momentum", "momentum_init": "zero"},
        "rmspropw": {"eps_placement": "inside_root", "lr_placement": "in_momentum"},
    },
    "tf1-rmsprop": {
        "rmsprop": {"eps_placement": "inside_root", "lr_placement": "in_momentum", "initial_square_avg": 1.0},
    },
    "paper": {
        "sgd": {"lr_placement": "in_momentum", "momentum_init": "zero"},
        "rmsprop": {"eps_placement": "inside_root", "lr_placement": "in_momentum"},
        "adam": {},
        "adamw": {"decay_convention": "paper"},
        "sgdw": {"lr_placement": "in_momentum", "momentum_init": "zero", "decay_convention": "paper"},
    },
}

# Hyperparameters each profile holds in float32 for weights of any dtype (the caller rounds them; see above).
FLOAT32_HYPERPARAMETERS = {
    "torch": (),
    "optax": (),
    "keras": ("lr",),
    "tf1-rmsprop": ("lr", "alpha", "eps", "momentum"),
    "paper": (),
}
