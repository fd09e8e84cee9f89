"""The documentation: a short README, a reference generated from the registries that names every
method, metric and model kind, example outputs that come from real runs, and a tutorial notebook that
runs."""

import importlib.util
import re

import pytest

from conftest import ROOT


def _reference_pages():
    spec = importlib.util.spec_from_file_location("reference_pages", ROOT / "docs" / "reference_pages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.pages()


def test_the_readme_is_short_and_starts_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    assert len(text.encode()) <= 8 * 1024
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1).splitlines()
    assert block[0].endswith("python -m vqa_interp.run") and "pytest" in block[1]


def test_the_generated_reference_names_every_method_metric_model_kind_and_config_key():
    from vqa_interp.attribution import METHODS
    from vqa_interp.metrics.registry import REGISTRY
    from vqa_interp.models.registry import MODELS

    pages = _reference_pages()
    for name in METHODS:
        assert f"| `{name}`" in pages["reference/methods.md"], name
    for name in REGISTRY:
        assert f"| `{name}` |" in pages["reference/metrics.md"], name
    for name in MODELS:
        assert f"| `{name}` |" in pages["reference/models.md"], name
    config = pages["reference/config.md"]
    for key in ("analysis.test", "analysis.min_images", "scoring.tie_policy", "method.n_steps", "model.pretrained"):
        assert f"`{key}`" in config, key


def test_example_outputs_in_the_docs_are_included_from_real_runs():
    """Run output is never pasted by hand: pages include docs/generated/*.txt, written by
    docs/generate_examples.py, each naming the command and the commit that printed it."""
    pasted = re.compile(r"^(Headline \(mean|MLflow run [0-9a-f]{8}|Method ranking \(one value)", re.M)
    for page in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]:
        if "reference" in page.parts:
            continue
        assert not pasted.search(page.read_text()), page
        for name in re.findall(r'--8<-- "([\w-]+\.txt)"', page.read_text()):
            generated = ROOT / "docs" / "generated" / name
            assert generated.exists(), (page, name)
            head = generated.read_text().splitlines()
            assert head[0].startswith("$ python -m vqa_interp.run") and "printed by commit" in head[1]


def test_the_tutorial_notebook_runs_and_stores_no_outputs():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    path = ROOT / "docs" / "tutorial.ipynb"
    notebook = nbformat.read(path, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
    nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "of the way to a human" in text
