"""MkDocs hook: write the generated reference pages (docs/reference_pages.py) before each build."""

import importlib.util
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent


def on_pre_build(config, **kwargs):
    if str(DOCS.parent) not in sys.path:
        sys.path.insert(0, str(DOCS.parent))  # the package, from the checkout being documented
    spec = importlib.util.spec_from_file_location("reference_pages", DOCS / "reference_pages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for relative, text in module.pages().items():
        path = DOCS / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != text:  # unchanged pages keep their time stamp
            path.write_text(text)
