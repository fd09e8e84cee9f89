"""The benchmark scripts run and their fast paths agree with the baselines (no timing asserted)."""

import json

import pytest

from benchmarks import gpu
from benchmarks.run import bench_scoring, to_markdown, verdicts


def test_scoring_benchmark_fast_and_naive_agree():
    results = bench_scoring(quick=True)
    assert results["scoring_max_abs_difference"] < 1e-6
    assert results["scoring_max_abs_difference.cam"] < 1e-6  # the metrics that do not depend on tie-breaking
    assert results["scoring_pairs"] == 32 and results["scoring_distinct_human_maps"] == 4
    report = {"command": "x", "date": "d", "machine": {"cpu": "c"}, "results": results, "verdicts": verdicts(results)}
    assert "scoring_speedup" in to_markdown(report)


@pytest.mark.slow
def test_gpu_script_runs_on_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    # ResNet-50 checks the script as ResNet-152 would, at a third of the cost
    assert (
        gpu.main(
            [
                "--device",
                "cpu",
                "--batch",
                "1",
                "--repeats",
                "1",
                "--size",
                "64",
                "--depth",
                "50",
                "--json",
                str(out),
                "--score-pairs",
                "4",
                "--score-size",
                "64",
                "--vilt-size",
                "embedded",
            ]
        )
        == 0
    )
    results = json.loads(out.read_text())
    assert results["scoring_pairs_per_second.device"] > 0 and results["scoring_pairs_per_second.numpy_cpu"] > 0
    for method in ("saliency", "gbackp", "deconv", "ggradcam"):
        assert results[f"maps_per_second.{method}"] > 0 and results[f"vqahat_val_minutes.{method}"] > 0
    for part in ("tokens", "share", "faithfulness"):
        assert results[f"explain_maps_per_second.{part}"] > 0
    for method in ("attention", "rollout", "chefer", "saliency"):
        assert results[f"vilt_maps_per_second.{method}"] > 0 and results[f"vilt_vqahat_val_minutes.{method}"] > 0
    # the paper-scale projection is the sum of its parts, each from the rates measured above
    parts = sum(results[f"projection.{p}_minutes"] for p in ("attribution", "explain", "scoring"))
    assert results["paper_scale_minutes"] == pytest.approx(parts) and results["paper_scale_minutes"] > 0
    expected = sum(1374 * 1.4 / results[f"maps_per_second.{m}"] for m in gpu.PAPER_METHODS) / 60
    assert results["projection.attribution_minutes"] == pytest.approx(expected)


def test_vilt_benchmark_reports_each_method_against_its_floor(monkeypatch):
    import benchmarks.vilt as vilt

    monkeypatch.setitem(vilt.SIZES, "b32", {**vilt.SIZES["embedded"], "batch": 2})  # the large size is the benchmark's
    results = vilt.bench_vilt(quick=True)
    for method in ("attention", "rollout", "chefer", "saliency", "inputxgrad", "ig"):
        assert results[f"vilt_overhead.{method}"] > 0
    assert (
        results["vilt_floor_backward_seconds_per_map.embedded"]
        > results["vilt_floor_forward_seconds_per_map.embedded"]
        > 0
    )


def test_explain_benchmark_reports_each_parts_cost():
    from benchmarks.run import bench_explain

    results = bench_explain(quick=True)
    for part in ("tokens", "share", "faithfulness"):
        assert results[f"explain_seconds_per_map.{part}.embedded"] > 0
        assert results[f"explain_overhead.{part}.embedded"] > 0  # a measured ratio (the benchmark reads it)
        assert "forward" in results[f"explain_passes_per_map.{part}"]


@pytest.mark.slow
def test_the_paper_models_memory_benchmark_runs_small():
    """The peak-RSS rows of model=kazemi (the benchmark reads them at 448 px, 6 and 60 questions)."""
    from benchmarks.run import kazemi_memory

    results = kazemi_memory((2, 3), side=64)
    assert results["kazemi_peak_rss_gb.2"] > 0 and results["kazemi_peak_rss_gb.3"] > 0
    assert results["kazemi_rss_ratio"] > 0 and "GiB" in results["kazemi_memory_budget"]


def test_vlm_benchmark_measures_each_method_against_its_floor(tmp_path):
    from benchmarks import vlm

    out = tmp_path / "vlm.json"
    vlm.main(["--size", "embedded", "--batch", "2", "--repeats", "1", "--ig-steps", "2", "--json", str(out)])
    results = json.loads(out.read_text())
    assert results["floor.forward_s"] > 0 and results["floor.forward_backward_s"] > 0
    for method in ("attention", "rollout", "chefer", "saliency", "ig"):
        assert results[f"{method}_ratio"] > 0 and results[f"{method}_maps_per_second"] > 0


def test_busy_benchmark_reports_the_ratio_of_each_policy(monkeypatch):
    """The controller's arithmetic and table (the workers' timings replaced: no timing is asserted)."""
    from benchmarks import busy

    timings = iter([{"seconds": 2.0, "threads": [2]}, {"seconds": 3.0, "threads": [1]}])
    monkeypatch.setattr(busy, "measure", lambda *args, **kwargs: next(timings))
    results = busy.bench(steps=1, recheck=1, workloads=["training"], policies=["sized"])
    assert results["training.sized"]["ratio"] == 1.5
    assert "| training | sized | 2.0 | 3.0 | 1.5 (met) |" in busy.to_markdown(results, 1)
