"""Recordings of torch's trajectories, for cross-checking a torch upgrade (docs/upgrades.md).

- :mod:`.store`: the format; write a recording (``refwd validate --record DIR``), read and verify one;
- :mod:`.replay`: replay a recording under the installed torch (``refwd validate --against DIR``);
- :mod:`.drift`: the verdict and the Markdown and JSON drift reports.
"""
from .drift import json_report, markdown, verdict, write_text
from .replay import (COMPARISON_STATUSES, STATUS_WORDS, CaseComparison, cases_to_compare, check_reference, compare,
                     compare_case)
from .store import (FORMAT, MANIFEST, SCHEMA_VERSION, RecordedCase, RecordedTorchError, Recorder, Recording,
                    RecordingError, Writer, case_definition, case_from_definition, first_irreproducible_step, load,
                    record_trajectory)

__all__ = ["json_report", "markdown", "verdict", "write_text", "COMPARISON_STATUSES", "STATUS_WORDS",
           "CaseComparison", "cases_to_compare", "check_reference", "compare", "compare_case", "FORMAT", "MANIFEST",
           "SCHEMA_VERSION", "RecordedCase", "RecordedTorchError", "Recorder", "Recording", "RecordingError",
           "Writer", "case_definition", "case_from_definition", "first_irreproducible_step", "load",
           "record_trajectory"]
