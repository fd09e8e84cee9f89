"""What a job of a Hydra sweep learns from Hydra: its parent run, the sweep's other k values, whether
its figures may be finished after it returns, and a note for the parent when it fails before its
run opens. (The sweep callback, :mod:`vqa_interp.tracking.callback`, writes what these read.)

The other k values reach a job through a file in the sweep folder, not through its config: Hydra
composes each job's config from that job's own overrides only (the sweeper's full list is not in
it), and a callback's ``on_job_start`` sees the config after the task's copy was made, so nothing
a callback adds there reaches the task function."""

from __future__ import annotations

import contextlib
from pathlib import Path

from vqa_interp.tracking.store import PARENT_ID_FILE


def parent_run_id_for_job() -> str | None:
    """Inside a Hydra multirun job: the parent run id written by the sweep callback."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    path = Path(hydra_cfg.sweep.dir) / PARENT_ID_FILE
    return path.read_text().strip() if path.exists() else None


def sweep_k_for_job() -> list[float]:
    """Inside a Hydra multirun job: the k values the sweep runs (written by the sweep callback)."""
    import json

    from vqa_interp.tracking.callback import SWEEP_K_FILE

    if not in_multirun():
        return []
    from hydra.core.hydra_config import HydraConfig

    path = Path(HydraConfig.get().sweep.dir) / SWEEP_K_FILE
    try:
        return [float(k) for k in json.loads(path.read_text())] if path.exists() else []
    except (ValueError, TypeError):
        return []


def progress_line(now: float | None = None) -> str:
    """Inside a Hydra multirun job: ``sweep job 3 of 8 (method=ig k=0.1); ~4.2 min left for the sweep``,
    the estimate from the time the earlier jobs took ("" outside a sweep)."""
    import json
    import time

    from vqa_interp.tracking.callback import SWEEP_PROGRESS_FILE

    if not in_multirun():
        return ""
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    number = int(hydra_cfg.job.num)
    what = " ".join(hydra_cfg.overrides.task)
    try:
        progress = json.loads((Path(hydra_cfg.sweep.dir) / SWEEP_PROGRESS_FILE).read_text())
        jobs, started = int(progress["jobs"]), float(progress["started"])
    except (OSError, ValueError, KeyError, TypeError):
        return f"sweep job {number + 1} ({what})"
    line = f"sweep job {number + 1} of {jobs} ({what})" if jobs else f"sweep job {number + 1} ({what})"
    if number and jobs > number:
        per_job = ((now or time.time()) - started) / number
        left = per_job * (jobs - number)
        line += f"; ~{left / 60:.1f} min left for the sweep ({per_job:.0f} s a job so far)"
    elif jobs > 1:
        line += "; the estimate of what is left comes after this job"
    return line


def figures_deferred() -> bool:
    """Whether this job's run may end after the job returns, once its figures are drawn: in a
    sweep whose jobs run in this process (Hydra's basic launcher), where the sweep's next job or
    its end finishes it (:func:`vqa_interp.tracking.figure_runs.finish_deferred`). A launcher that
    runs jobs in other processes gets each run finished by its own job."""
    from hydra.core.hydra_config import HydraConfig

    if not in_multirun():
        return False
    target = str(HydraConfig.get().launcher.get("_target_", ""))
    return target.endswith(".BasicLauncher")


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def record_job_not_applicable(exc: BaseException) -> None:
    from hydra.core.hydra_config import HydraConfig

    from vqa_interp.tracking.sweep import record_not_applicable

    with contextlib.suppress(Exception):
        hydra_cfg = HydraConfig.get()
        record_not_applicable(hydra_cfg.sweep.dir, int(hydra_cfg.job.num), list(hydra_cfg.overrides.task), str(exc))


def record_job_failure(exc: BaseException) -> None:
    from hydra.core.hydra_config import HydraConfig

    from vqa_interp.tracking.sweep import record_failed_job

    with contextlib.suppress(Exception):
        hydra_cfg = HydraConfig.get()
        record_failed_job(
            hydra_cfg.sweep.dir, int(hydra_cfg.job.num), list(hydra_cfg.overrides.task), f"{type(exc).__name__}: {exc}"
        )
