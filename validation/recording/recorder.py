"""Recording a run of the harness (``refwd validate --record DIR``): torch's trajectory of every case, and the
step, if any, at which a second run of the same torch differs from the first."""
import numpy as np

from .. import twin
from ..compare import jsonable
from .store import Writer


def record_trajectory(case):
    """Run torch on ``case`` (one thread) and return (its :class:`refwd_validation.twin.TorchStep` s, the error
    text or None). A torch error ends the trajectory; the steps before it are kept and the error is recorded (a
    documented torch error is part of torch's behaviour, and a later version that stops raising it has changed).
    """
    with twin.one_thread():
        return twin.Tape(case).finish()


def first_irreproducible_step(steps, again):
    """The first step at which two runs of the same torch differ bit for bit (None: the runs agree).

    torch 2.13's fused SGD on float16/bfloat16 CPU params reads memory it never wrote (pytorch/pytorch#191763),
    so its numbers change from run to run; such a case cannot be compared bit for bit with another version.
    """
    for first, second in zip(steps, again):
        for name in first.new_params:
            pairs = [(first.new_params[name], second.new_params[name]), (first.all_grads[name], second.all_grads[name])]
            pairs += [(value, second.new_state[name].get(key)) for key, value in first.new_state[name].items()]
            if any(np.asarray(a).tobytes() != np.asarray(b).tobytes() for a, b in pairs):
                return first.step
    return None



class Recorder:
    """A reporter for ``refwd validate --record DIR``: records torch's trajectory of every case run.

    The harness ran torch once on a :class:`refwd_validation.twin.Tape` (:meth:`tape`); the recorder keeps that
    run and runs torch once more, to find the steps at which torch does not reproduce itself.
    """

    def __init__(self, directory):
        self.writer = Writer(directory)
        self.tapes = {}

    def tape(self, case):
        if case.kind != "trajectory":
            return None
        self.tapes[case.id] = twin.Tape(case)
        return self.tapes[case.id]

    def start(self, cases):
        pass

    def result(self, result):
        if result.case.kind != "trajectory":   # the constructor checks: nothing to record
            return
        if result.unsupported is not None:     # this torch cannot run it: named in the manifest, nothing stored
            self.tapes.pop(result.case.id)
            self.writer.skip(result.case, result.unsupported)
            return
        steps, error = self.tapes.pop(result.case.id).finish()
        irreproducible = first_irreproducible_step(steps, record_trajectory(result.case)[0])
        reference = {"status": str(result.status), "worst_ulps": jsonable(result.worst_ulps), "detail": result.detail}
        self.writer.add(result.case, steps, error, reference, irreproducible)

    def finish(self, results, seconds):
        self.manifest = self.writer.finish()
