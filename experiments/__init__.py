"""Experiments on weight decay: each module has a pure ``run(...)`` returning a result, and a ``main()`` report.

Run one with ``python -m experiments.<name>``; each takes seconds, is deterministic (fixed seeds,
full-batch gradients, float64) and never imports torch. tests/test_experiments.py asserts each conclusion,
and docs/make_figures.py draws the figures of docs/experiments.md from the same results.

=====================================  ==========================================================================
module                                 question
=====================================  ==========================================================================
:mod:`.coupled_vs_decoupled`           How far apart do L2 (coupled) and weight decay (decoupled) take SGD,
                                       RMSprop and Adam from the same start?
:mod:`.effective_decay`                Under Adam + L2, how strongly is each weight actually decayed?
:mod:`.adamw_as_rmsprop`               Is AdamW with betas=(0, α) RMSprop with decoupled decay?
:mod:`.fixed_points`                   Where do coupled and decoupled optimizers converge on least squares?
:mod:`.overfitting`                    Does weight decay narrow the train/validation gap of an over-sized MLP?
=====================================  ==========================================================================
"""
NAMES = ("coupled_vs_decoupled", "effective_decay", "adamw_as_rmsprop", "fixed_points", "overfitting")
