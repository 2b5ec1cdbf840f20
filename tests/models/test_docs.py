"""docs/MODELS.md agrees with the registry, and examples/own_model.py runs.

Regenerate the zoo table with ``PYTHONPATH=. python tests/models/test_docs.py`` and paste it
between the markers in docs/MODELS.md.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

from specedge.models import list_models, model_entry

REPO = Path(__file__).resolve().parents[2]
MODELS_MD = REPO / "docs" / "MODELS.md"
START, END = "<!-- zoo-table:start -->", "<!-- zoo-table:end -->"
BUILTIN = ("lenet5", "convnet", "mobilenet_v1", "resnet8", "resnet20")
_COMMON = {"num_classes", "in_channels", "input_size"}


def _options(name: str) -> str:
    params = inspect.signature(model_entry(name).builder).parameters.values()
    return ", ".join(f"`{p.name}={p.default!r}`" for p in params if p.name not in _COMMON) or "-"


def render_zoo_table(names: tuple[str, ...] = BUILTIN) -> str:
    """The markdown table of docs/MODELS.md, from the registry."""
    lines = [
        "| name | reference input | params | MACs | options | source |",
        "|---|---|--:|--:|---|---|",
    ]
    for name in names:
        e = model_entry(name)
        shape = "x".join(map(str, e.reference_input))
        lines.append(
            f"| `{name}` | {shape} | {e.reference_params:,} | {e.reference_macs:,} | {_options(name)} | "
            f"{e.description} |"
        )
    return "\n".join(lines)


def test_models_md_table_matches_registry() -> None:
    text = MODELS_MD.read_text()
    table = text.split(START, 1)[1].split(END, 1)[0].strip()
    assert table == render_zoo_table(), "docs/MODELS.md is stale; regenerate it (see this module's docstring)"
    assert set(BUILTIN) <= set(list_models())


def test_public_surface_is_importable() -> None:
    from specedge import models

    assert sorted(models.__all__) == models.__all__
    assert all(hasattr(models, name) for name in models.__all__)


def test_own_model_example_runs_and_reloads_identically(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "own_model.py"), str(tmp_path / "tiny")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "max |difference| = 0.0" in result.stdout
    assert sorted(p.name for p in (tmp_path / "tiny").iterdir()) == ["manifest.json", "model.safetensors"]


if __name__ == "__main__":
    print(render_zoo_table())
