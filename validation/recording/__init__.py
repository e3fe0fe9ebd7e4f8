"""Recordings of torch's trajectories, for cross-checking a torch upgrade (docs/upgrades.md).

- :mod:`.store`: the format; write a recording, read and verify one;
- :mod:`.checks`: the checks that a recording, as untrusted input, passes before it is read;
- :mod:`.recorder`: record a run of the harness (``refwd validate --record DIR``);
- :mod:`.replay`: replay a recording under the installed torch (``refwd validate --against DIR``);
- :mod:`.drift`: the verdict and the Markdown and JSON drift reports.
"""
from .drift import json_report, markdown, verdict, write_text
from .recorder import Recorder, first_irreproducible_step, record_trajectory
from .replay import (COMPARISON_STATUSES, STATUS_WORDS, CaseComparison, cases_to_compare, check_reference, compare,
                     compare_case, recorded_verdict)
from .store import (FORMAT, MANIFEST, SCHEMA_VERSION, RecordedCase, RecordedTorchError, Recording, RecordingError,
                    Writer, case_definition, case_from_definition, load)

__all__ = ["json_report", "markdown", "verdict", "write_text", "COMPARISON_STATUSES", "STATUS_WORDS",
           "CaseComparison", "cases_to_compare", "check_reference", "compare", "compare_case", "recorded_verdict",
           "FORMAT", "MANIFEST", "SCHEMA_VERSION", "RecordedCase", "RecordedTorchError", "Recorder", "Recording",
           "RecordingError", "Writer", "case_definition", "case_from_definition", "first_irreproducible_step",
           "load", "record_trajectory"]
