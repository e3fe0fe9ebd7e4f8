"""counts: the case matrix and the mutant catalogue, counted (no torch, a second)."""

TORCH_FOUR = ("sgd", "rmsprop", "adam", "adamw")


def part_of(case):
    """The part of docs/oracle.md's matrix table a case belongs to."""
    from refwd_validation.cases import CONFIGS, FREE_CONFIGS, LOWP_CONFIGS
    if case.impl == "capturable":
        return "capturable"
    for prefix in ("flags", "defaults", "long", "nonfinite", "roundtrip", "constructor", "compiled", "scaler"):
        if case.config.startswith(prefix + "-"):
            return "flags_paths" if prefix == "flags" and case.impl in ("differentiable", "tensor-lr") else prefix
    if case.config in {config["name"] for config in CONFIGS}:
        return "scenarios_paths" if case.impl in ("differentiable", "tensor-lr") else "scenarios"
    if case.config in {config["name"] for config in FREE_CONFIGS}:
        return "free"
    if case.config in {config["name"] for config in LOWP_CONFIGS}:
        return "lowp"
    raise ValueError(f"{case.id}: no part of the matrix table")


def hand_written(case):
    """A case of the hand-written scenarios on torch's kernels (refwd 0.2.0's first matrix: the scenario table)."""
    from refwd_validation.cases import KERNELS
    return part_of(case) in ("scenarios", "free", "lowp") and case.impl in KERNELS


def measure_counts():
    from refwd_validation.cases import CASES, select
    from refwd_validation.mutants import CONTRACT_MUTANTS, MATRIX_MUTANTS, MUTANTS
    cpu, quick = select(CASES, device="cpu"), select(CASES, device="cpu", quick=True)
    parts = {}
    for case in cpu:
        parts[part_of(case)] = parts.get(part_of(case), 0) + 1
    parts["paths"] = parts.pop("scenarios_paths") + parts.pop("flags_paths")   # one row of the table
    counts = {
        "all": len(CASES), "cpu": len(cpu), "cuda": len(select(CASES, device="cuda")),
        "cuda_capturable": len(select(CASES, device="cuda", impl="capturable")),
        "trajectories": sum(case.kind == "trajectory" for case in cpu),
        "quick": len(quick), "quick_torch": sum(case.optimizer in TORCH_FOUR for case in quick),
        "quick_twins": sum(case.optimizer not in TORCH_FOUR for case in quick),
        "hand_written": sum(hand_written(case) for case in cpu),
        "parts": parts,
        "mutants": {"all": len(MUTANTS), "contract": len(CONTRACT_MUTANTS), "matrix": len(MATRIX_MUTANTS)},
    }
    return {"counts": counts}
