"""Figures drawn in a forked process (vqa_interp.report.drawing): the same files as drawn in
this process, logged to a real SQLite MLflow store before the run ends; a failed drawing ends
its run FAILED with the child's traceback; a cancelled one leaves no process; deferred runs are
finished in order, at the latest at the end."""

import os
import time

import pytest
from matplotlib.figure import Figure
from mlflow.tracking import MlflowClient

from vqa_interp.analysis.figures import save_figure
from vqa_interp.report.drawing import can_fork, draw_figures
from vqa_interp.settings import TrackingSettings
from vqa_interp.tracking import figure_runs
from vqa_interp.tracking.figure_runs import defer, finish, finish_deferred, pending
from vqa_interp.tracking.store import start_run

pytestmark = pytest.mark.skipif(not can_fork(), reason="figures are drawn in a forked process on Linux only")


def _figure(title: str) -> Figure:
    fig = Figure(figsize=(3, 2))
    ax = fig.subplots()
    ax.plot([0, 1, 2], [2, 0, 1])
    ax.set_title(title)
    fig.tight_layout()
    return fig


def _source(*names, fail_at=None, sleep=0.0) -> dict:
    def maker(name):
        def make():
            if name == fail_at:
                raise ValueError(f"no data for {name}")
            time.sleep(sleep)
            return _figure(name)

        return make

    return {name: maker(name) for name in names}


@pytest.fixture
def tracking(tmp_path):
    return TrackingSettings(uri=f"sqlite:///{tmp_path}/mlflow.db", artifact_root=str(tmp_path / "artifacts"))


def test_the_forked_drawing_writes_what_this_process_would_and_keeps_the_named_ones(tmp_path):
    keep = tmp_path / "kept"
    cached = tmp_path / "old.png"
    save_figure(_figure("old"), cached)
    job = draw_figures(_source("a", "b"), keep_in=lambda name: keep if name == "b" else None, cached=[cached])
    assert job.pid is not None and job.pid != os.getpid()
    pngs, seconds = job.collect()
    assert [p.name for p in pngs] == ["a.png", "b.png", "old.png"] and seconds > 0
    for png in pngs:
        assert png.with_suffix(".svg").read_text().lstrip().startswith("<?xml")
    inline = tmp_path / "inline"
    inline.mkdir()
    save_figure(_figure("a"), inline / "a.png")
    assert (job.folder / "a.png").read_bytes() == (inline / "a.png").read_bytes()
    assert sorted(p.name for p in keep.iterdir()) == ["b.png", "b.svg"]
    job.remove()
    assert not job.folder.exists()


def test_a_run_ends_only_once_its_figures_are_logged(tracking):
    tracker = start_run(tracking, "figures")
    job = draw_figures(_source("fig7", "fig8"))
    finish(tracker, job)
    client = MlflowClient(tracking.uri)
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED"
    assert {a.path for a in client.list_artifacts(tracker.run_id, "figures")} == {
        "figures/fig7.png",
        "figures/fig7.svg",
        "figures/fig8.png",
        "figures/fig8.svg",
    }
    assert run.data.metrics["time/figures_s"] > 0


def test_a_failed_drawing_ends_the_run_failed_with_the_childs_traceback(tracking):
    tracker = start_run(tracking, "broken figures")
    job = draw_figures(_source("fig7", "fig8", fail_at="fig8"))
    with pytest.raises(RuntimeError, match="no data for fig8"):
        finish(tracker, job)
    run = MlflowClient(tracking.uri).get_run(tracker.run_id)
    assert run.info.status == "FAILED"
    assert "ValueError: no data for fig8" in run.data.tags["error"]
    assert not job.folder.exists()


def test_a_cancelled_drawing_leaves_no_process_and_no_folder():
    job = draw_figures(_source("a", "b", "c", sleep=5.0))
    with pytest.raises(KeyError):
        with job.cancelled_on_error():
            raise KeyError("the run failed after the fork")
    assert job.status is not None and not job.folder.exists()
    with pytest.raises(ChildProcessError):
        os.waitpid(job.pid, os.WNOHANG)


def test_deferred_runs_are_finished_when_drawn_and_all_at_the_end(tracking):
    slow_tracker, fast_tracker = start_run(tracking, "slow"), start_run(tracking, "fast")
    slow = draw_figures(_source("s", sleep=1.5))
    fast = draw_figures(_source("f"))
    defer(slow_tracker, slow)
    defer(fast_tracker, fast)
    client = MlflowClient(tracking.uri)
    while not fast.done():
        time.sleep(0.05)
    finish_deferred(wait=False)  # the fast one only: the slow one is still drawing
    assert client.get_run(fast_tracker.run_id).info.status == "FINISHED"
    assert client.get_run(slow_tracker.run_id).info.status == "RUNNING" and pending() == 1
    finish_deferred(wait=False, at_most=0)  # no more drawing processes than allowed: wait for it
    assert client.get_run(slow_tracker.run_id).info.status == "FINISHED" and pending() == 0
    assert {a.path for a in client.list_artifacts(slow_tracker.run_id, "figures")} == {"figures/s.png", "figures/s.svg"}


def test_a_deferred_drawing_that_fails_ends_its_run_failed_and_is_not_raised(tracking, caplog):
    tracker = start_run(tracking, "deferred, broken")
    defer(tracker, draw_figures(_source("x", fail_at="x")))
    finish_deferred()
    assert MlflowClient(tracking.uri).get_run(tracker.run_id).info.status == "FAILED"
    assert "no data for x" in caplog.text and not figure_runs._DEFERRED


def test_a_job_waits_only_for_the_figures_an_earlier_job_keeps_for_it(tracking, tmp_path):
    """A k sweep's next job reuses the figures that do not depend on k as soon as they are written,
    while the earlier job's other figures are still being drawn."""
    cache = tmp_path / "figure-cache"
    tracker = start_run(tracking, "first job")
    makers = {"k_independent": _source("k_independent")["k_independent"], **_source("k_dependent", sleep=3.0)}
    job = draw_figures(makers, keep_in=lambda name: cache if name == "k_independent" else None, keeps=cache)
    defer(tracker, job)
    finish_deferred(wait=False, keeps=cache)
    assert sorted(p.name for p in cache.iterdir()) == ["k_independent.png", "k_independent.svg"]
    assert not job.done() and pending() == 1
    assert MlflowClient(tracking.uri).get_run(tracker.run_id).info.status == "RUNNING"
    finish_deferred()
    assert MlflowClient(tracking.uri).get_run(tracker.run_id).info.status == "FINISHED" and pending() == 0


def test_two_drawing_processes_draw_every_figure_once_the_kept_ones_in_the_first(tmp_path, tracking):
    """A run that waits for its figures draws them in two processes: the same files, each figure
    drawn once, the kept (k-independent) ones by the first process; a failure in either fails the run."""
    from vqa_interp.report.drawing import FigureJobs, draw_figures_split

    keep = tmp_path / "kept"
    kept = {"k1", "k2"}
    makers = _source("k1", "k2", "a", "b", "c", sleep=0.3)
    job = draw_figures_split(makers, keep_in=lambda name: keep if name in kept else None, keeps=keep, workers=2)
    assert isinstance(job, FigureJobs) and len(job.jobs) == 2 and job.keeps == keep
    first, second = job.jobs
    assert len({first.pid, second.pid, os.getpid()}) == 3
    pngs, seconds = job.collect()
    assert sorted(p.name for p in pngs) == ["a.png", "b.png", "c.png", "k1.png", "k2.png"] and seconds > 0
    assert {p.name for p in first.folder.glob("*.png")} >= {"k1.png", "k2.png"}
    assert not {p.name for p in second.folder.glob("*.png")} & {"k1.png", "k2.png"}
    assert sorted(p.name for p in keep.iterdir()) == ["k1.png", "k1.svg", "k2.png", "k2.svg"]
    job.remove()
    assert not first.folder.exists() and not second.folder.exists()
    # one worker, or a single figure: the plain one-process job
    single = draw_figures_split(_source("x"), workers=2)
    assert not isinstance(single, FigureJobs) and [p.name for p in single.collect()[0]] == ["x.png"]
    single.remove()
    failing = draw_figures_split(_source("a", "b", "c", fail_at="c"), workers=2)
    tracker = start_run(tracking, "figures")
    with pytest.raises(RuntimeError, match="no data for c"):
        finish(tracker, failing)
    assert MlflowClient(tracking.uri).get_run(tracker.run_id).info.status == "FAILED"


@pytest.mark.parametrize("breaks", [False, True])
def test_the_parent_compares_while_the_last_figures_draw_and_again_if_one_fails(tracking, breaks):
    """A sweep's comparison counts a child whose figures are still drawing as FINISHED, ends the
    child once drawn, and makes the comparison again if that child then ends FAILED."""
    from vqa_interp.tracking.figure_runs import pending_runs
    from vqa_interp.tracking.sweep import close_parent

    parent = start_run(tracking, "sweep", tags={"run_kind": "sweep"})
    child = start_run(tracking, "job", parent_run_id=parent.run_id, tags={"run_kind": "evaluation"})
    child.log_params({"method.name": "saliency", "k": "0.1"})
    child.log_metrics({"model/accuracy": 0.5})
    defer(child, draw_figures(_source("late", sleep=1.0, fail_at="late" if breaks else None)))
    compared = []

    def finish_after_comparing():
        compared.append(MlflowClient(tracking.uri).get_run(child.run_id).info.status)
        finish_deferred()

    status = close_parent(parent, "FINISHED", pending_runs(), finish_after_comparing)
    client = MlflowClient(tracking.uri)
    assert compared == ["RUNNING"] and pending() == 0  # compared before the child ended
    child_status = "FAILED" if breaks else "FINISHED"
    assert client.get_run(child.run_id).info.status == child_status
    assert status == ("FAILED" if breaks else "FINISHED") == client.get_run(parent.run_id).info.status
    metrics = client.get_run(parent.run_id).data.metrics
    assert (metrics["count/children_finished"], metrics["count/children_failed"]) == ((0, 1) if breaks else (1, 0))
    table = client.download_artifacts(parent.run_id, "tables/children_headline.csv")
    assert list(__import__("pandas").read_csv(table)["status"]) == [child_status]
