"""The conventions a rule can follow besides torch's: each keyword's values, torch's first, and their one check.

Each keyword is a visible line of a rule's algorithm box (see the rules' docstrings); this module only names the
values so that a misspelt one fails loudly instead of silently running torch's branch. Which library uses which
value is data in :mod:`refwd.optim.profiles`; docs/conventions.md has the table.
"""

EPS_PLACEMENTS = ("after_root", "inside_root", "hat", "floor")  # √v̂ + ε, √(v̂ + ε), ε̂, max(√v̂, ε)
LR_PLACEMENTS = ("outside_momentum", "in_momentum")              # θ − γb with b ∝ g, or θ − b with b ∝ γg
MOMENTUM_INITS = ("first_grad", "zero")                          # b₁ = g₁, or b₀ = 0 and b₁ = (1 − τ)g₁


def check_choice(name, value, choices):
    """Raise ValueError unless ``value`` is one of ``choices`` (the values this rule supports for ``name``)."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
