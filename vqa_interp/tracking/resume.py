"""Sweeps that resume: the same multirun command, re-run after a preemption or a lost node, reopens
its interrupted parent and reuses the children that already FINISHED with the same config.

- A sweep's identity is its ``sweep_signature`` (its task overrides, launcher settings left out:
  a sweep killed under one launcher may resume under another). A re-run whose last parent of that
  signature ended KILLED or FAILED (or was left RUNNING by a process that is gone, which
  :func:`vqa_interp.tracking.store.close_orphans` marks KILLED first) reopens that parent; a
  parent that FINISHED is never reopened (re-running a complete sweep starts a new one).
- A child's identity is its ``config_signature``: the resolved config (where files and the
  tracking store live, and the memory budget, which changes no number, left out) and the code's
  commit. Under a reopened parent, a job whose signature already FINISHED there returns that run
  (tagged ``reused``) without any work; a leftover of the same signature that did not finish
  (RUNNING from a killed process, KILLED, FAILED) is closed and tagged ``superseded``, never reused,
  and the sweep's comparison leaves it out (:func:`vqa_interp.tracking.store.child_runs`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging

from vqa_interp.tracking.liveness import liveness_tags
from vqa_interp.tracking.store import (
    SUPERSEDED_TAG,
    RunTracker,
    check_reachable,
    child_runs,
    client_for,
    close_orphans,
    ensure_experiment,
    git_commit,
    resolve_tracking_uri,
)

log = logging.getLogger(__name__)

SWEEP_SIGNATURE_TAG, CONFIG_SIGNATURE_TAG = "sweep_signature", "config_signature"
REUSED_TAG = "reused"
# keys that say where things live, how much memory to use or how the work is spread over threads and
# processes, never what is computed
UNSIGNED_PREFIXES = ("tracking.uri", "tracking.artifact_root", "paths.", "memory.", "scoring.workers", "scoring.fork")


def _digest(payload) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


def sweep_signature(overrides: list[str]) -> str:
    """A multirun's identity: its task overrides, in any order, without ``hydra`` keys."""
    return _digest(sorted(o for o in overrides if not o.lstrip("+~").startswith("hydra")))


def config_signature(params: dict[str, str]) -> str:
    """A job's identity: its flattened resolved config (``UNSIGNED_PREFIXES`` left out) and the commit."""
    kept = {k: v for k, v in params.items() if not k.startswith(UNSIGNED_PREFIXES)}
    return _digest({"config": kept, "commit": git_commit()})


def resume_parent(tracking, signature: str, tags: dict) -> RunTracker | None:
    """Reopen the latest interrupted parent of ``signature`` (KILLED or FAILED), with this process's
    host and PID and ``tags``; None when there is none (the caller starts a new parent)."""
    check_reachable(resolve_tracking_uri(tracking.uri))  # a store it cannot use: one line, before anything
    client = client_for(resolve_tracking_uri(tracking.uri))
    experiment_id = ensure_experiment(client, tracking.experiment, tracking.artifact_root)
    close_orphans(client, experiment_id)
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.{SWEEP_SIGNATURE_TAG} = '{signature}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not found or found[0].info.status not in ("KILLED", "FAILED"):
        return None
    run = found[0]
    resumed = int(run.data.tags.get("resumed", "0")) + 1
    client.update_run(run.info.run_id, status="RUNNING")
    tracker = RunTracker(client, run.info.run_id, experiment_id)
    tracker.set_tags(
        {
            **tags,
            **liveness_tags(resolve_tracking_uri(tracking.uri), tracking.artifact_root),
            "resumed": resumed,
            "resumed_from_status": run.info.status,
        }
    )
    log.warning(
        "resuming sweep parent %s (it ended %s): children that FINISHED with the same config are reused",
        run.info.run_id,
        run.info.status,
    )
    return tracker


def reuse_child(client, parent_run_id: str, signature: str):
    """The FINISHED child of ``parent_run_id`` with ``signature`` (tagged ``reused``), or None after
    closing and tagging ``superseded`` every other child of that signature."""
    same = [r for r in child_runs(client, parent_run_id) if r.data.tags.get(CONFIG_SIGNATURE_TAG) == signature]
    finished = [r for r in same if r.info.status == "FINISHED"]
    if finished:
        run = finished[0]
        client.set_tag(run.info.run_id, REUSED_TAG, str(int(run.data.tags.get(REUSED_TAG, "0") or 0) + 1))
        return run
    for run in same:
        with contextlib.suppress(Exception):
            if run.info.status == "RUNNING":
                client.set_terminated(run.info.run_id, "KILLED")
            client.set_tag(run.info.run_id, SUPERSEDED_TAG, "true")
            log.warning(
                "closed leftover run %s (%s) of this job's config: computed again", run.info.run_id, run.info.status
            )
    return None
