"""The groups: what each measures, about how long it takes, and whether it needs torch or is only timings."""
import dataclasses

from .counts import measure_counts
from .experiments import measure_experiments
from .matrix import measure_matrix
from .mutants import measure_mutant_tests, measure_mutants
from .optax_profiles import measure_optax
from .reports import measure_recording, measure_reports, measure_sweep
from .scalars import measure_scalars
from .timings import measure_check, measure_fuzz, measure_record, measure_times, measure_watch


@dataclasses.dataclass(frozen=True)
class Group:
    measure: object
    what: str
    seconds: str           # about how long, on 2 cores (measured)
    torch: bool = True
    timing: bool = False   # only timings (quoted with their machine and date, never compared)


GROUPS = {
    "counts": Group(measure_counts, "case counts of the matrix and its parts, the mutant catalogue", "1", torch=False),
    "matrix": Group(measure_matrix, "`refwd validate` of the CPU matrix: worst ULPs per optimizer, check, kind and "
                    "path, the scenario table, the known defects; and its run time", "65"),
    "times": Group(measure_times, "`refwd validate --quick` x3, the compiled cases cold and warm, the fixed cost",
                   "90", timing=True),
    "mutants": Group(measure_mutants, "every mutant in the lock-step and free-running checks and on each path",
                     "30-50"),
    "mutant-tests": Group(measure_mutant_tests, "tests/test_mutants.py: its tests and run time", "30", timing=True),
    "experiments": Group(measure_experiments, "the five experiments and the SGD identity's bound search", "10",
                         torch=False),
    "reports": Group(measure_reports, "the drift reports docs/reports/*.json", "1", torch=False),
    "sweep": Group(measure_sweep, "the version sweep's docs/data/version-sweep/*.json", "1", torch=False),
    "recording": Group(measure_recording, "the golden recording tests/data/golden", "1", torch=False),
    "record": Group(measure_record, "`refwd validate --record` and `--against`: run times", "250", timing=True),
    "fuzz": Group(measure_fuzz, "`refwd validate --fuzz` with docs/oracle.md's seeds", "70"),
    "check": Group(measure_check, "`refwd check torch.optim:AdamW --as adamw --quick` x3", "30", timing=True),
    "scalars": Group(measure_scalars, "docs/findings-scalars.md's extreme hyperparameters in torch's for-loop, "
                     "foreach and fused and refwd, in float32 ulps; torch's CPU square root against NumPy's", "10"),
    "optax": Group(measure_optax, "docs/check.md's diagnosis of `refwd check optax:rmsprop --as rmsprop`; "
                   "tests/test_profiles.py's optax comparisons (needs optax and jax)", "35"),
    "watch": Group(measure_watch, "benchmarks/bench_watch.py: the watcher's overhead", "50", timing=True),
}
