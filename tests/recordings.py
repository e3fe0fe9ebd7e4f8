"""Shared by the recording tests: a small recording of chosen cases, its manifest as JSON, and a torch whose Adam
is wrong (a change beyond tolerance). Import after ``pytest.importorskip("torch")``."""
import json
import shutil

import torch

from refwd_validation import recording
from refwd_validation.cases import CASE_IDS


def make_recording(directory, case_ids):
    """Record torch's trajectories of ``case_ids`` into ``directory`` (each reference verdict "pass")."""
    writer = recording.Writer(directory)
    for case_id in case_ids:
        steps, error = recording.record_trajectory(CASE_IDS[case_id])
        writer.add(CASE_IDS[case_id], steps, error, {"status": "pass"})
    writer.finish()
    return directory


def damageable_copy(directory, tmp_path):
    """A copy of the recording that a test may damage."""
    target = tmp_path / "rec"
    shutil.copytree(directory, target)
    return target


def manifest(directory):
    return json.loads((directory / "manifest.json").read_text())


def write_manifest(directory, data):
    (directory / "manifest.json").write_text(json.dumps(data))


class AdamWrongSecondMoment(torch.optim.Adam):
    """A new torch whose Adam is wrong: exp_avg_sq off by 0.1 %."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = super().step(closure)
        for state in self.state.values():
            state["exp_avg_sq"].mul_(1.001)
        return loss
