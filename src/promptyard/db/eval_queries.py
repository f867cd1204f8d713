"""Read-only aggregates over the evaluation tables that the prompt library needs (an experiment's pass rate per
version): here, below both, so that prompts/ never imports evals/, which builds on the prompt library."""

from __future__ import annotations

from sqlalchemy import case, func, select

from promptyard.db import db
from promptyard.db.eval_models import EvalRun, EvalSample


def pass_rate_by_version(version_ids: list[int]) -> dict[int, dict]:
    """{version_id: {"passed": n, "total": m}} over the samples of finished runs scored against each version."""
    if not version_ids:
        return {}
    rows = db.session.execute(
        select(EvalRun.version_id, func.count(EvalSample.id), func.sum(case((EvalSample.passed.is_(True), 1), else_=0)))
        .join(EvalSample, EvalSample.run_id == EvalRun.id)
        .where(EvalRun.version_id.in_(version_ids), EvalRun.status == "succeeded")
        .group_by(EvalRun.version_id)
    ).all()
    found = {vid: {"passed": int(passed or 0), "total": int(total)} for vid, total, passed in rows}
    return {vid: found.get(vid, {"passed": 0, "total": 0}) for vid in version_ids}
