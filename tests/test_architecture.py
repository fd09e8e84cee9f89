"""The shape of the package: stage packages, no import cycles, Hydra and MLflow where they belong,
no process-wide state changed on import, and the three registries extended the way the docs say."""

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, python

PACKAGE = ROOT / "vqa_interp"
HYDRA_ALLOWED = {"vqa_interp.run", "vqa_interp.train", "vqa_interp.tracking.callback", "vqa_interp.tracking.hydra_job"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path) -> set[str]:
    """Every module imported anywhere in the file (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: {i for i in _imports(path) if i in modules and i != name} for name, path in modules.items()}


def _package_of(module: str) -> str:
    """``vqa_interp.pipeline.score`` -> ``vqa_interp.pipeline``; a flat module and a package's
    ``__main__`` (entry points, which sit above every package) are their own nodes."""
    return module if module.endswith(".__main__") else ".".join(module.split(".")[:2])


def _package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, imported in _graph().items():
        node = _package_of(module)
        graph.setdefault(node, set()).update(_package_of(i) for i in imported if _package_of(i) != node)
    return graph


def test_the_stages_are_packages_and_few_modules_stay_flat():
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert {
        "data",
        "models",
        "attribution",
        "metrics",
        "analysis",
        "tracking",
        "pipeline",
        "explain",
        "report",
    } <= packages
    flat = [p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
    assert len(flat) <= 8, flat
    stages = {p.stem for p in (PACKAGE / "pipeline").glob("*.py")}
    assert {"data", "model", "predict", "targets", "attribute", "score", "sanity", "explain"} <= stages


def test_no_module_is_long():
    long = {
        p.relative_to(PACKAGE).as_posix(): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 420
    }
    assert not long, long


@pytest.mark.parametrize("graph_of", [_graph, _package_graph], ids=["modules", "packages"])
def test_no_import_cycles_even_through_deferred_imports(graph_of):
    graph = graph_of()
    state: dict[str, int] = {}

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(nxt) :] + [nxt]))
            if nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_layers_go_one_way():
    """tracking may use analysis, never the reverse; settings knows no model; the randomisation
    tests draw no figure; the model interface is how stages reach a model."""
    graph = _graph()
    for module, imported in graph.items():
        if module.startswith("vqa_interp.analysis"):
            assert not any(i.startswith("vqa_interp.tracking") for i in imported), module
        if module.startswith(("vqa_interp.attribution", "vqa_interp.explain", "vqa_interp.pipeline")):
            assert not any(i.startswith("vqa_interp.models.kazemi") for i in imported), module
    assert not any(i.startswith("vqa_interp.models") for i in graph["vqa_interp.settings"])
    assert not any("figures" in i for i in graph["vqa_interp.attribution.sanity"])
    for path in (PACKAGE / "attribution").glob("*.py"):  # no module path, no (q, q_len) in the methods
        text = path.read_text()
        assert "backbone.layer4" not in text and "q_len" not in text and ".net." not in text, path.name


def test_hydra_only_in_the_entry_points_and_mlflow_only_under_tracking():
    for name, path in _modules().items():
        imports = _imports(path)
        if any(i == "hydra" or i.startswith("hydra.") for i in imports):
            assert name in HYDRA_ALLOWED, f"{name} imports Hydra"
        if any(i == "mlflow" or i.startswith("mlflow.") for i in imports):
            assert name.startswith("vqa_interp.tracking"), f"{name} imports MLflow"


def test_tracking_is_mlflow_and_report_is_what_people_read():
    """tracking/ holds the MLflow side (the store, run records, sweeps, merges, resumes) and renders
    no page; report/ renders the pages and never touches the store (its ``__main__`` is the entry
    point that joins the two)."""
    graph = _graph()
    for name, path in _modules().items():
        text = path.read_text()
        if name.startswith("vqa_interp.tracking"):
            assert "<html" not in text.lower() and "import html" not in text, f"{name} renders HTML"
            assert not any(i.startswith("vqa_interp.report.page") for i in graph[name]), name
        if name.startswith("vqa_interp.report") and not name.endswith("__main__"):
            assert not any(i.startswith("vqa_interp.tracking") for i in graph[name]), f"{name} imports tracking"


def test_importing_the_package_changes_no_process_wide_state():
    script = textwrap.dedent("""
        import json, logging, pkgutil, importlib, warnings
        # third-party libraries set their own warning filters on import: import them first
        import captum.attr, hydra, matplotlib, matplotlib.figure, mlflow, numpy as np, omegaconf, pandas, PIL, scipy.stats
        import torch, torchvision
        def state():
            return [repr(warnings.filters), repr(logging.getLogger().handlers), repr(np.geterr()),
                    logging.getLogger().level, dict.__getitem__(matplotlib.rcParams, "backend"),
                    torch.get_num_threads()]
        before = state()
        import vqa_interp
        for info in pkgutil.walk_packages(vqa_interp.__path__, "vqa_interp."):
            if not info.name.endswith("__main__"):
                importlib.import_module(info.name)
        print(json.dumps(before == state()))
    """)
    result = subprocess.run([python(), "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "true"
    # the allocator setting belongs to the command-line entry points, called from main(), not on import
    callers = [
        p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py") if "    keep_freed_buffers()" in p.read_text()
    ]
    assert callers == ["run.py"]
    assert "mallopt" not in "".join(p.read_text() for p in PACKAGE.rglob("*.py") if p.name != "allocator.py")


def test_metric_lists_come_from_the_registry():
    from vqa_interp.metrics import family_metrics, metric_names
    from vqa_interp.scoring import METRICS

    assert METRICS == metric_names()[: len(METRICS)]
    assert metric_names()[:2] == ("rank_corr", "intersect")
    assert set(family_metrics()) == {"rank_corr", "intersect", "iou", "dice"}
    for path in PACKAGE.rglob("*.py"):
        if path.parent.name != "metrics":
            assert '"precision", "recall"' not in path.read_text(), f"{path} keeps its own metric list"


# ------------------------------------------------------------------ extending the registries
PLUGIN = '''
"""A toy plugin: one metric, one method and one dataset with an option of its own, registered the
documented way."""
from dataclasses import dataclass

import numpy as np

from vqa_interp.attribution import Method, register
from vqa_interp.data.datasets import Embedded, EmbeddedOptions, register_dataset
from vqa_interp.metrics import metric
from vqa_interp.util.options import option


def _top_mass_reference(a, h, options):
    region = (h >= np.sort(h.ravel())[::-1][options.n_region - 1])
    return float(a[region].sum() / a.sum())


@metric("toy_top_mass", needs=("values",), range=(0.0, 1.0), reference=_top_mass_reference)
def toy_top_mass(a, h):
    """Share of the attribution's raw mass on the human map's top-k pixels (ties included)."""
    region = h.values >= np.sort(h.values)[::-1][h.options.n_region - 1]
    return float(a.values[region].sum() / a.values.sum())


def _doubled_gradient(model, options):
    def attribute(x, target, question):     # model: the model interface; target, question: its encodings
        x = x.detach().requires_grad_(True)
        model.target_scores(x, question, target).sum().backward()
        return options["scale"] * x.grad.abs()
    return attribute


register(Method("toy_grad", _doubled_gradient, {"scale": 2.0}, "scaled |gradient|"))


@dataclass(frozen=True)
class OneAnnotatorOptions(EmbeddedOptions):
    annotator: int = option(1, "the one annotator every map is scored against (1-based)", minimum=1)


@register_dataset
class ToyOneAnnotator(Embedded):
    """The embedded benchmark scored against one annotator only (data.annotator)."""
    name = "toy_first"
    Options = OneAnnotatorOptions

    def human_maps(self, example, geometry, mode="mean", annotator=1):
        return super().human_maps(example, geometry, "annotator", self.options.annotator)
'''


@pytest.fixture
def toy_plugin(tmp_path, monkeypatch):
    """Write the plugin module and its two config files; unregister everything afterwards."""
    from vqa_interp.attribution import METHODS
    from vqa_interp.data.datasets import DATASETS
    from vqa_interp.metrics import REGISTRY

    (tmp_path / "toy_plugin.py").write_text(PLUGIN)
    conf = tmp_path / "conf"
    (conf / "method").mkdir(parents=True)
    (conf / "data").mkdir()
    (conf / "method" / "toy_grad.yaml").write_text("name: toy_grad\nscale: 2.0\n")
    embedded = (ROOT / "conf" / "data" / "embedded.yaml").read_text()
    (conf / "data" / "toy_first.yaml").write_text(
        embedded.replace("name: embedded", "name: toy_first") + "annotator: 1             # the dataset's own key\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for registry, key in ((REGISTRY, "toy_top_mass"), (METHODS, "toy_grad"), (DATASETS, "toy_first")):
        registry.pop(key, None)
    sys.modules.pop("toy_plugin", None)


def test_a_registered_metric_scores_through_score_and_its_reference(toy_plugin):
    import importlib

    from vqa_interp.metrics import ScoringOptions, score
    from vqa_interp.metrics.reference import score_pair_reference

    importlib.import_module("toy_plugin")
    rng = np.random.default_rng(0)
    a, h = rng.random((3, 16, 16)), np.round(rng.random((3, 16, 16)) * 4)
    frame = score(a, h, size=16, metrics=["toy_top_mass", "iou"])
    assert list(frame.columns) == ["toy_top_mass", "iou", "undefined"]
    for i in range(3):
        expected = score_pair_reference(a[i], h[i], ScoringOptions(size=16), metrics=["toy_top_mass"])
        assert frame.loc[i, "toy_top_mass"] == pytest.approx(expected["toy_top_mass"], abs=1e-12)


@pytest.mark.slow
def test_a_plugin_method_metric_and_dataset_run_through_the_cli(toy_plugin, cli_env, tmp_path):
    from mlflow.tracking import MlflowClient

    env = {**cli_env, "PYTHONPATH": f"{toy_plugin}:{cli_env['PYTHONPATH']}"}
    command = [
        python(),
        "-m",
        "vqa_interp.run",
        f"hydra.searchpath=[file://{toy_plugin / 'conf'}]",
        "+plugins=[toy_plugin]",
        "method=toy_grad",
        "data=toy_first",
        "data.limit=6",
        "preprocessing.size=32",
        "analysis.bootstrap=50",
        "analysis.n_panels=1",
    ]
    refused = subprocess.run(
        command + ["data.annotator=0"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900
    )
    assert refused.returncode == 2 and "data.annotator=0; expected an integer >= 1" in refused.stderr
    assert "Traceback" not in refused.stderr
    result = subprocess.run(
        command + ["data.annotator=2"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-4000:]
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("vqa-interp")
    run = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("run_kind") == "evaluation"][0]
    assert run.info.status == "FINISHED" and run.data.params["method.name"] == "toy_grad"
    assert run.data.params["data.name"] == "toy_first" and run.data.params["data.annotator"] == "2"
    table = pd.read_csv(client.download_artifacts(run.info.run_id, "tables/per_example.csv", str(tmp_path)))
    assert "toy_top_mass" in table and table["toy_top_mass"].between(0, 1).all()
    assert (table["method"] == "toy_grad").all()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["saliency", "ggradcam"])
def test_smoke_tables_equal_the_stored_ones(method, cli_env, tmp_path):
    """The per-example table of `+experiment=smoke` (tie policy `index`) is the stored one
    (tests/data/smoke_{method}_v0.3.csv), from the stored checkpoint (tests/data/smoke_model_v0.3.pth).

    The checkpoint is pinned because the weights depend on the CPU's kernels: the same config and
    seed train byte-identical weights on one machine (loaded or not, tests/test_embedded.py), but an
    AVX-512 and an AVX2 machine train different models, and every number moves with the model.
    Re-baselined on purpose: v0.2 -> v0.3 when KL came to read the raw maps as pysaliency does
    (every other stored column was equal to 1e-9 under the old and the new code on this checkpoint)
    and `question_type` and the leave-one-out `loo/*` scores were added. Re-baseline only on such a
    deliberate change, saying why in the commit."""
    from mlflow.tracking import MlflowClient

    from vqa_interp.data.embedded import GENERATOR_VERSION

    assert GENERATOR_VERSION == 13, "the embedded data changed: re-baseline tests/data/smoke_*_v0.3.csv on purpose"
    checkpoint = ROOT / "tests" / "data" / "smoke_model_v0.3.pth"
    result = subprocess.run(
        [
            python(),
            "-m",
            "vqa_interp.run",
            "+experiment=smoke",
            f"method={method}",
            "scoring.tie_policy=index",
            f"model.checkpoint={checkpoint}",
        ],
        env=cli_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    client = MlflowClient(cli_env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("vqa-interp")
    run = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("run_kind") == "evaluation"][0]
    new = pd.read_csv(client.download_artifacts(run.info.run_id, "tables/per_example.csv", str(tmp_path)))
    old = pd.read_csv(ROOT / "tests" / "data" / f"smoke_{method}_v0.3.csv")
    # every stored column is still there, in the same order (new columns come after them)
    assert [c for c in new.columns if c in set(old.columns)] == list(old.columns)
    assert new["map_key"].str.fullmatch(r"\d+_\d+_[0-9a-f]{16}").all()
    # the explain stage's numbers come from 32-step IG sums and curves: a looser tolerance than scores
    explain = [
        "token_error",
        "image_share",
        "share_error",
        "deletion_auc",
        "insertion_auc",
        "random_deletion_auc",
        "random_insertion_auc",
        "token_auc",
        "token_top1",
        "token_top1_chance",
    ]
    scores = [c for c in old.columns if c not in explain]
    # atol 1e-6: the maps are float32 and differ in the 7th-8th digit with the batch they were computed in
    # (Guided Grad-CAM: cc -0.004327966 and -0.004327973 from a fresh and a warm cache) and with the CPU's
    # kernels (saliency on an AVX-512 machine: rank_corr 0.0296765 against the stored 0.0296764)
    pd.testing.assert_frame_equal(new[scores], old[scores], check_exact=False, rtol=1e-6, atol=1e-6)
    # atol 1e-5: token_error is a relative IG completeness error, a difference of float32 sums (0.0086932 on
    # an AVX-512 machine against the stored 0.0086913)
    pd.testing.assert_frame_equal(new[explain], old[explain], check_exact=False, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ adding a model
PLUGINS = ROOT / "tests" / "plugins"


@pytest.mark.slow
def test_a_plugin_model_runs_every_stage_through_the_cli(cli_env, tmp_path):
    """The toy model of tests/plugins/toy_vqa.py (its own inputs, one file + one config): saliency and
    Grad-CAM maps, token attributions, the image share, the faithfulness curves and the sanity check
    all run on it through the model interface, in one sweep."""
    from mlflow.tracking import MlflowClient

    env = {**cli_env, "PYTHONPATH": f"{PLUGINS}:{cli_env['PYTHONPATH']}"}
    result = subprocess.run(
        [
            python(),
            "-m",
            "vqa_interp.run",
            "-m",
            f"hydra.searchpath=[file://{PLUGINS / 'conf'}]",
            "+plugins=[toy_vqa]",
            "model=toy",
            "method=saliency,gradcam",
            "+experiment=sanity",
            "analysis.sanity_questions=6",
            "data.limit=16",
            "preprocessing.size=32",
            "analysis.bootstrap=50",
            "analysis.n_panels=1",
            "explain.ig_steps=8",
            "explain.steps=4",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("vqa-interp")
    runs = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("run_kind") == "evaluation"]
    assert sorted(r.data.params["method.name"] for r in runs) == ["gradcam", "saliency"]
    for run in runs:
        assert run.info.status == "FINISHED" and run.data.tags["model_kind"] == "toy"
        assert run.data.params["model.kind"] == "toy"
        folder = tmp_path / run.info.run_id
        folder.mkdir()
        tables = {
            name: pd.read_csv(client.download_artifacts(run.info.run_id, f"tables/{name}.csv", str(folder)))
            for name in ("per_example", "token_attributions", "faithfulness_curves", "sanity_randomisation")
        }
        table = tables["per_example"]
        assert len(table) and table["rank_corr"].notna().any() and table["image_share"].notna().any()
        assert table["deletion_auc"].between(0, 1).all()
        assert len(tables["token_attributions"]) and set(tables["faithfulness_curves"]["source"]) == {
            "method",
            "random",
        }
        blocks = tables["sanity_randomisation"]
        assert list(dict.fromkeys(blocks[blocks["mode"] == "cascading"].sort_values("step")["block"])) == [
            "none",
            "head",
            "text",
            "grid",
        ]


def test_a_method_the_model_cannot_serve_is_refused_before_any_work():
    from vqa_interp.errors import ConfigError
    from vqa_interp.models import ModelKind
    from vqa_interp.models.registry import check_method

    pixels_only = ModelKind("pixels_only", lambda settings, checkpoint: None, frozenset({"pixels"}))
    check_method(pixels_only, "saliency", ("pixels",))
    with pytest.raises(ConfigError, match="method=gradcam needs the model's cam_layer"):
        check_method(pixels_only, "gradcam", ("pixels", "cam_layer"))
