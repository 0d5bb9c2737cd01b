"""A job's progress: the stage's range, and one time estimate, the outer job's, when a job runs inside another."""
from __future__ import annotations

import re

from sipp_core.jobs.job_progress import JobProgress


def test_a_job_inside_a_job_reports_one_estimate():
    said = []
    outer = JobProgress(lambda f, m: said.append((f, m)))
    inner = JobProgress(outer.stage(0.5, 1.0, "cascade 2/2: "))  # a study's cascade reports through the study
    inner.report(0.5, "step 1/2")
    inner.report(1.0, "cascade finished")
    (f1, m1), (f2, m2) = said
    assert f1 == 0.75 and f2 == 1.0
    assert re.fullmatch(r"cascade 2/2: step 1/2 \(about \d+ s left\)", m1), m1
    assert re.fullmatch(r"cascade 2/2: cascade finished \(took \d+ s\)", m2), m2
