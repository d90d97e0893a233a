"""The training run's logger: records to metrics.jsonl, the bar from synthloop.progress, JSON lines
when quiet."""

from __future__ import annotations

import json

from synthloop.progress import JobProgress
from synthloop.training.run_log import RunLogger


def test_run_logger_bar_is_a_job_progress_over_the_steps(tmp_path, capsys):
    logger = RunLogger(tmp_path, quiet=False, total_steps=10, start_step=4)
    assert isinstance(logger.progress, JobProgress)
    assert logger.progress.completed == 4  # a resumed run's bar starts at its step
    logger.log({"kind": "train", "step": 5, "loss": 1.5})
    logger.advance(5, "train ep 0 loss 1.5000")
    logger.advance(6, None)
    assert logger.progress.completed == 6
    logger.close()
    out = capsys.readouterr()
    assert out.out == ""  # the bar is on stderr; stdout stays clean
    assert "train" in out.err
    recs = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert recs == [{"kind": "train", "step": 5, "loss": 1.5}]


def test_run_logger_quiet_prints_the_records_as_json_lines(tmp_path, capsys):
    logger = RunLogger(tmp_path, quiet=True, total_steps=10, start_step=0)
    assert logger.progress is None
    logger.log({"kind": "train", "step": 1, "loss": 2.0})
    logger.advance(1, "loss 2.0")
    logger.close()
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line) for line in lines] == [{"kind": "train", "step": 1, "loss": 2.0}]


def test_job_progress_update_sets_an_absolute_count(capsys):
    with JobProgress(20, "train", quiet=True, unit="step", completed=3) as p:
        p.update(7, "loss 0.5")
        p.update(9)
    recs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    steps = [r for r in recs if r["event"] == "step"]
    assert [(r["completed"], r.get("status")) for r in steps] == [(7, "loss 0.5"), (9, None)]
    assert recs[-1]["event"] == "end" and recs[-1]["completed"] == 9
