"""The mechanism of a mutant: a source edit of one of refwd's rules (or of its optimizer class), compiled apart.

A :class:`Mutant` names the optimizers its edit applies to, the edits (exact ``old`` text → ``new`` text), what a
case needs for the bug to show, and the harness checks that catch it. :meth:`Mutant.rule` applies the edits to
the rule's own source (``inspect.getsource``) and compiles the result in a copy of the rule module's globals, so
the math is never written twice and refwd itself is never touched; a class mutant gets a mutated class.
:func:`cheapest_case` picks the case of the matrix that shows a bug at the least cost. The catalogue is
:mod:`refwd_validation.mutants`.
"""
import functools
import inspect
import sys
import textwrap
from dataclasses import dataclass, field

from . import scenario
from .outcomes import Check
from .optimizers import OPTIMIZERS

# The harness's checks that a mutant's ``caught_by`` may name.
LOCKSTEP = Check.LOCKSTEP          # teacher-forced: the rule on torch's params, grads and state at step t
FREE_RUNNING = Check.FREE_RUNNING  # refwd's own trajectory against torch's
BOTH = (LOCKSTEP, FREE_RUNNING)


@dataclass(frozen=True)
class Mutant:
    """One plausible bug: a source edit of a reference rule, and where it shows.

    - ``id``: short, stable, used in test ids and docs/mutants.md.
    - ``optimizers``: the optimizer keys whose rule the edit applies to ("adam" and "adamw" share
      ``adam_step``: AdamW's param groups carry ``decoupled_weight_decay=True``).
    - ``bug``: the real-world bug, in one sentence.
    - ``edits``: ``(old, new)`` pairs applied in order to the rule's dedented source; each ``old`` must occur
      exactly once in the source at that point.
    - ``needs``: what a case must have for the bug to show: hyperparameters of one param group (a bool
      must equal, a number must be non-zero when True and zero when False) and case features (see
      :data:`CASE_FEATURES`).
    - ``caught_by``: the harness checks that report it, each on its own: "lockstep" on the cheapest case
      that :meth:`shows_in`, "free-running" on a free-running case that shows it (with the reference rule
      in the lock-step check). A check left out is one whose cases lack the flags the bug needs.
    - ``fresh``: names bound to new objects in the mutated rule's globals each time the rule is built
      (the bugs that keep a counter outside the per-tensor state).
    - ``contract``: for a bug whose values are right but that breaks a contract of the pure rule
      (:mod:`refwd_validation.contracts`): "dtype", "inputs" or "aliasing". Only the lock-step check
      checks contracts, so such a mutant is caught by it alone.
    - ``method``: for a bug in refwd's optimizer class rather than its rule: the edits apply to this method of
      the class (``"__init__"``, or ``"load_state_dict"`` of the shell), and :meth:`rule` gives the mutated
      class, which the harness builds instead of refwd's (``scenario.refwd_optimizer``).
    - ``defaults``: (name, value) pairs: a class whose constructor defaults are these instead of torch's.
    """

    id: str
    optimizers: tuple
    bug: str
    edits: tuple
    needs: dict = field(default_factory=dict, hash=False)
    caught_by: tuple = BOTH
    fresh: tuple = ()
    contract: str = ""
    method: str = ""
    defaults: tuple = ()

    def rule(self, optimizer):
        """The mutated per-tensor rule for one optimizer key, built afresh (fresh counters included); for a
        class mutant (``method`` or ``defaults``), the mutated optimizer class."""
        if optimizer not in self.optimizers:
            raise ValueError(f"mutant {self.id!r} applies to {self.optimizers}, not {optimizer!r}")
        if self.method or self.defaults:
            return _mutate_class(OPTIMIZERS[optimizer].refwd_class, self)
        return _mutate(OPTIMIZERS[optimizer].rule, self)

    def rules(self):
        """``{optimizer key: mutated rule}`` for every optimizer it applies to: the harness's ``rules`` argument."""
        return {optimizer: self.rule(optimizer) for optimizer in self.optimizers}

    def shows_in(self, case):
        """Whether a case of refwd_validation.cases has what this bug needs to show: its optimizer, its features,
        and the needed hyperparameters together in one param group (defaults and group overrides applied)."""
        if case.optimizer not in self.optimizers:
            return False
        if (case.kind == "constructor") != bool(self.needs.get("constructor")):
            return False
        features = {name: test(case) for name, test in CASE_FEATURES.items()}
        if any(features[name] != wanted for name, wanted in self.needs.items() if name in features):
            return False
        wanted = {name: value for name, value in self.needs.items() if name not in features}
        return any(all(bool(group[name]) == value for name, value in wanted.items())
                   for group in _param_groups(case))


# Case features a mutant may need besides hyperparameters, read from a refwd_validation.cases.Case.
CASE_FEATURES = {
    "late_grad": lambda case: bool(case.grad_none),   # a parameter whose grad is None for some steps
    "beta1_nonzero": lambda case: dict(case.hyperparameters).get("betas", (0.9, 0.999))[0] != 0,
    "float32": lambda case: case.dtype == "float32",  # a dtype bug is invisible in float64
    "defaults": lambda case: case.kind == "trajectory" and not case.hyperparameters,   # no hyperparameter given
    "long_run": lambda case: case.steps > 256,        # longer than a bfloat16 counter counts
    "nonfinite": lambda case: bool(case.inject),      # an inf or NaN injected into a gradient
    "round_trip": lambda case: bool(case.round_trip_at),
    "paper_convention": lambda case: dict(case.hyperparameters).get("decay_convention") == "paper",
    "constructor": lambda case: case.kind == "constructor",
}


@functools.lru_cache(maxsize=None)
def _param_groups(case):
    """The case's param groups as refwd's optimizer fills them (defaults, then the group's overrides)."""
    return scenario.refwd_optimizer(case, list(scenario.initial_params(case))).param_groups


def cost(case):
    """A case's relative running time: steps × parameter elements."""
    elements = sum(n_in * n_out + n_out for n_in, n_out in zip(case.model, case.model[1:]))
    return case.total_steps * elements


def cheapest_case(mutant, cases):
    """The cheapest of ``cases`` that shows ``mutant`` (ties: the first), or None."""
    showing = [case for case in cases if mutant.shows_in(case)]
    return min(showing, key=cost, default=None)


def _mutate(function, mutant):
    source = _edited(inspect.getsource(function), mutant, function.__qualname__)
    namespace = dict(vars(sys.modules[function.__module__]))  # a copy: refwd's module is never touched
    namespace.update({name: factory() for name, factory in mutant.fresh})
    exec(compile(source, f"<mutant {mutant.id} of {function.__qualname__}>", "exec"), namespace)
    mutated = namespace[function.__name__]
    mutated.__qualname__ = f"{function.__qualname__}[{mutant.id}]"
    return mutated


def _mutate_class(cls, mutant):
    """refwd's optimizer class ``cls`` with its constructor defaults changed, or one method's source edited.

    An edited method is compiled in a class statement, so that its ``super()`` works: a method of ``cls`` itself
    goes into a copy of ``cls`` (same bases, same attributes), an inherited one (the shell's) into a subclass.
    """
    if mutant.defaults:
        return type(cls.__name__, (cls,), {"__init__": functools.partialmethod(cls.__init__, **dict(mutant.defaults)),
                                           "__qualname__": f"{cls.__qualname__}[{mutant.id}]"})
    owner = next(klass for klass in cls.__mro__ if mutant.method in vars(klass))
    source = _edited(inspect.getsource(getattr(owner, mutant.method)), mutant, f"{owner.__name__}.{mutant.method}")
    namespace = dict(vars(sys.modules[owner.__module__]))
    namespace["_bases"] = cls.__bases__ if owner is cls else (cls,)
    statement = f"class {cls.__name__}(*_bases):\n" + textwrap.indent(source, "    ")
    exec(compile(statement, f"<mutant {mutant.id} of {owner.__qualname__}.{mutant.method}>", "exec"), namespace)
    mutated = namespace[cls.__name__]
    if owner is cls:
        for name, value in vars(cls).items():
            if name not in vars(mutated) and name not in ("__dict__", "__weakref__"):
                setattr(mutated, name, value)
    mutated.__qualname__ = f"{cls.__qualname__}[{mutant.id}]"
    return mutated


def _edited(source, mutant, where):
    source = textwrap.dedent(source)
    for old, new in mutant.edits:
        count = source.count(old)
        if count != 1:
            raise AssertionError(f"mutant {mutant.id!r}: the text {old!r} occurs {count} times in "
                                 f"{where}'s source, not once; update the catalogue")
        source = source.replace(old, new)
    return source
