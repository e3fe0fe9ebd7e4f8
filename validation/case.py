"""A case of the matrix: one comparison of torch against refwd, as a frozen record (:mod:`refwd_validation.cases`
builds the matrix of them)."""
from dataclasses import dataclass

LOW_PRECISION = ("float16", "bfloat16")


@dataclass(frozen=True)
class Case:
    """One comparison of torch against refwd.

    - ``hyperparameters``: the optimizer's constructor keywords as (name, value) pairs (torch's names);
      :attr:`kwargs` gives them as a dict.
    - ``model``: layer sizes; two sizes are one ``Linear(n0, n1)``, more are an MLP (``nn.Sequential``) with
      ``activation`` between the layers. Parameter names are torch's (``"weight"``, ``"0.weight"``, ...).
    - ``groups``: the param-group layout: () for one group of every parameter, else a tuple of
      (selector, overrides) where selector is "weights", "biases", "all", "layer:<index>" (a Sequential
      index such as "layer:2"), a parameter name or a tuple of parameter names, and overrides are (name, value) pairs for that group (e.g. weight_decay).
      Every parameter must be selected exactly once.
    - ``lr_schedule``: factors the groups' base lr is multiplied by at steps 1, 2, ... (cycled); () for none.
    - ``loss_scale`` and ``loss_decay``: the loss at step t (1-based) is multiplied by
      ``loss_scale * loss_decay ** (t - 1)``: a constant scale (as AMP's loss scaling, which keeps float16
      gradients out of the subnormal range) and a decay below 1 for gradients that shrink over time.
    - ``grad_none``: (parameter name, steps) pairs: at those 1-based steps the parameter's grad is None.
    - ``free_steps``: > 0 to also run the free-running check (refwd's own trajectory) for that many steps.
    - ``kind``: "trajectory" (a run, checked step by step) or "constructor" (the optimizer's invalid
      hyperparameters, each rejected by refwd as by torch; the run's fields are unused).
    - ``inject``: (parameter name, step, element index, value) tuples: after backward at that 1-based step,
      the element of torch's gradient is set to the value (inf, -inf, NaN), so both sides step on it.
    - ``scalar_bias``: the last layer (of one output) has a 0-d bias, broadcast over the batch: a 0-d parameter.
    - ``round_trip_at``: > 0 for a state_dict round trip after that step: refwd's lock-step optimizer is loaded
      from torch's ``state_dict()``, and torch goes on with a new optimizer loaded from refwd's.
    - ``expect_error``: "" normally. Otherwise torch is documented (docs/oracle.md, findings) to raise an error
      containing this text here, or to differ from refwd where the first mismatch's description contains it;
      if it does, the steps before are still checked and the result is "pass" with torch's error or the
      mismatch shown in its note. If torch does neither, the case is checked as any other.
    """

    id: str                     # "<config>-<short dtype>-<impl>-<device>", e.g. "adam-plain-f32-fused-cpu"
    config: str                 # the configuration it expands (CONFIGS, FREE_CONFIGS, LOWP_CONFIGS)
    optimizer: str
    hyperparameters: tuple = ()
    model: tuple = (4, 1)
    activation: str = "tanh"
    groups: tuple = ()
    dtype: str = "float64"
    impl: str = "forloop"
    device: str = "cpu"
    steps: int = 10
    free_steps: int = 0
    lr_schedule: tuple = ()
    loss_scale: float = 1.0
    loss_decay: float = 1.0
    grad_none: tuple = ()
    batch: int = 16
    data: str = "teacher"       # "teacher": y = a random teacher net + noise; "line": the seed's y = 2x + 1, x = 1..batch
    seed: int = 0
    quick: bool = False
    description: str = ""
    expect_error: str = ""
    kind: str = "trajectory"
    inject: tuple = ()
    round_trip_at: int = 0
    scalar_bias: bool = False

    @property
    def kwargs(self):
        return {name: value for name, value in self.hyperparameters}

    @property
    def total_steps(self):
        return max(self.steps, self.free_steps)

    @property
    def lowp(self):
        return self.dtype in LOW_PRECISION

    def lr_factor(self, step):
        """The factor on each group's base lr at 1-based ``step``."""
        if not self.lr_schedule:
            return 1.0
        return self.lr_schedule[(step - 1) % len(self.lr_schedule)]

    def grad_is_none(self, name, step):
        return any(name == param and step in steps for param, steps in self.grad_none)

    def injected(self, step):
        """[(parameter name, element index, value)] injected into the gradients at 1-based ``step``."""
        return [(name, index, value) for name, at, index, value in self.inject if at == step]

    def step_grads(self, step, all_grads):
        """The grads the optimizer gets at 1-based ``step`` from autograd's ``all_grads``: None where the case has
        no grad, the injected values set (in copies)."""
        grads = {name: None if self.grad_is_none(name, step) else grad for name, grad in all_grads.items()}
        for name, index, value in self.injected(step):
            if grads.get(name) is not None:
                grads[name] = grads[name].copy()
                grads[name][index] = value
        return grads
