"""Every code block of the README runs, in order, as a reader would run it: in a fresh working directory
whose recipes/quickstart.yaml is the real recipe at a tiny scale (the tiny random encoder, 24 examples
per split, one epoch), so the commands are the README's own, verbatim.

Two blocks are not run here, by design: the install line (``.ci/run`` runs exactly that script in a
fresh virtualenv before this suite) and ``python -m pytest -q`` (this suite itself).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mtbert.config import load_config

REPO = Path(__file__).resolve().parents[1]
NOT_RUN_HERE = ("scripts/install.sh", "pytest")


def readme_blocks() -> list[tuple[str, str]]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return [(language, body) for language, body in re.findall(r"```(\w+)\n(.*?)```", text, flags=re.S)]


def tiny_quickstart(sandbox: Path, tiny_checkpoint: Path, data_dir: Path) -> None:
    recipe = yaml.safe_load((REPO / "recipes" / "quickstart.yaml").read_text(encoding="utf-8"))
    recipe["model"].update({"name": str(tiny_checkpoint), "max_length": 64})
    recipe["data"].update({"dir": str(data_dir), "limit": 24})
    recipe["train"].update({"epochs": 1, "batch_size": 8, "progress": False, "device": "cpu"})
    (sandbox / "recipes").mkdir()
    (sandbox / "recipes" / "quickstart.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")


def test_the_readme_has_the_blocks_this_test_expects():
    languages = [language for language, _ in readme_blocks()]
    assert languages.count("bash") >= 3 and "python" in languages and "yaml" in languages
    assert sum(any(marker in body for marker in NOT_RUN_HERE) for _, body in readme_blocks()) == 2


def test_every_readme_code_block_runs(tmp_path, tiny_checkpoint, data_dir):
    sandbox = tmp_path / "reader"
    sandbox.mkdir()
    tiny_quickstart(sandbox, tiny_checkpoint, data_dir)
    shims = tmp_path / "bin"
    shims.mkdir()
    (shims / "mtbert").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m mtbert "$@"\n')
    (shims / "mtbert").chmod(0o755)
    environment = {**os.environ, "PATH": f"{shims}{os.pathsep}{os.environ['PATH']}", "MTBERT_DATA_DIR": str(data_dir),
                   "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    ran = []
    for number, (language, body) in enumerate(readme_blocks()):
        if any(marker in body for marker in NOT_RUN_HERE):
            continue
        if language == "bash":
            command = ["bash", "-euo", "pipefail", "-c", body]
        elif language == "python":
            command = [sys.executable, "-c", body]
        elif language == "yaml":
            path = sandbox / f"block{number}.yaml"
            path.write_text(body, encoding="utf-8")
            load_config(path)  # a config block must be a valid config
            ran.append(language)
            continue
        else:
            pytest.fail(f"README block {number} in {language!r}: this test does not know how to run it")
        done = subprocess.run(command, cwd=sandbox, env=environment, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"README block {number} failed:\n{body}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        ran.append(language)
    assert ran.count("bash") >= 2 and "python" in ran and "yaml" in ran
    assert (sandbox / "runs" / "quickstart" / "report" / "report.html").exists()
    assert not (REPO / "my-encoder").exists() and not (REPO / "runs" / "quickstart-1epoch").exists()


def test_the_project_speaks_of_itself_only():
    """No README, docs, code or benchmark record refers to how the project was made."""
    pattern = re.compile(r"issue [0-9]|stop [0-9]", re.IGNORECASE)
    found = []
    for root in ("README.md", "docs", "mtbert", "benchmarks"):
        paths = [REPO / root] if (REPO / root).is_file() else sorted((REPO / root).rglob("*"))
        for path in paths:
            if path.is_file() and path.suffix in (".md", ".py", ".json", ".yaml", ".txt", ".csv"):
                found += [f"{path.relative_to(REPO)}: {m.group(0)}" for m in pattern.finditer(path.read_text(errors="replace"))]
    assert not found, found[:10]
