"""Every tutorial in notebooks/ runs top to bottom (jupytext percent scripts, executed by
nbclient), in place and from a copy of notebooks/ and examples/ somewhere else."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))
EXPECTED = ["01_quickstart", "02_fuzzing", "03_limits_and_lifecycle", "04_changing_rules"]


def execute(path: Path) -> Any:
    """Run a notebook the way Jupyter does: the kernel starts in the notebook's folder."""
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    notebook = jupytext.read(path)
    client = nbclient.NotebookClient(
        notebook,
        timeout=180,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()  # raises CellExecutionError, with the failing cell, on any exception
    errors = [
        o for c in notebook.cells for o in c.get("outputs", []) if o.get("output_type") == "error"
    ]
    assert not errors
    return notebook


def outputs(notebook: Any, mime: str) -> list[str]:
    return [
        o["data"][mime]
        for cell in notebook.cells
        for o in cell.get("outputs", [])
        if mime in o.get("data", {})
    ]


def test_the_tutorials_are_there_as_jupytext_scripts() -> None:
    assert [p.stem for p in NOTEBOOKS] == EXPECTED
    for path in NOTEBOOKS:
        assert path.read_text().startswith("# %% [markdown]\n# # "), path.name


def test_no_ipynb_file_is_committed() -> None:
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(
        [git, "ls-files", "*.ipynb"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert tracked == ""


def check_quickstart(notebook: Any) -> None:
    """A bare explain() renders as HTML (not a quoted string full of \\n), so do the
    sandbox and a session, and the two plots draw."""
    pages = outputs(notebook, "text/html")
    assert any("promo-sandbox-explanation" in p and "CouponRejectedByCondition" in p for p in pages)
    assert any("promo-sandbox-sandbox" in p for p in pages)
    assert any("promo-sandbox-session" in p for p in pages)
    plain = [t for t in outputs(notebook, "text/plain") if "CouponRejectedByCondition" in t]
    assert plain
    assert all("\\n" not in t for t in plain)
    assert len(outputs(notebook, "image/png")) == 2


def check_lifecycle(notebook: Any) -> None:
    """The limit plot draws and the sandbox with its limits renders."""
    assert len(outputs(notebook, "image/png")) == 1
    assert any("remaining" in p for p in outputs(notebook, "text/html"))


def check_changing_rules(notebook: Any) -> None:
    """Both coverage tables render: the recorded sessions' with Big basket's rule
    highlighted as never fired, the fuzz run's with every rule fired."""
    tables = [p for p in outputs(notebook, "text/html") if "rule coverage" in p]
    assert len(tables) == 2
    recorded, fuzzed = tables
    never = "background:#ffebe9"
    assert f"<span style='{never};" in recorded
    assert "never fired" in recorded
    assert "never fired" not in fuzzed
    printed = "".join(
        "".join(o.get("text", "")) for cell in notebook.cells for o in cell.get("outputs", [])
    )
    assert "+SPRING_THRESHOLD = 60" in printed  # the change, as a reviewer sees it
    assert "code now rejected: 5 session(s)" in printed


CONTENT_CHECKS = {
    "01_quickstart": check_quickstart,
    "03_limits_and_lifecycle": check_lifecycle,
    "04_changing_rules": check_changing_rules,
}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom_and_shows_what_it_promises(path: Path) -> None:
    notebook = execute(path)
    CONTENT_CHECKS.get(path.stem, lambda _: None)(notebook)


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_runs_from_a_copy_with_the_examples_elsewhere(name: str, tmp_path: Path) -> None:
    # Somewhere with no repository above it: only the two copied folders.
    home = tmp_path / "my copy"
    shutil.copytree(
        ROOT / "notebooks", home / "notebooks", ignore=shutil.ignore_patterns("*.ipynb")
    )
    shutil.copytree(ROOT / "examples", home / "examples")
    execute(home / "notebooks" / f"{name}.py")
