"""The docs stay true to the code: every image and file they link exists, and every config field is in
the usage reference."""

from __future__ import annotations

import dataclasses
import re
import typing

from mtbert.config import ExperimentConfig

from conftest import REPO

LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_every_relative_link_in_the_docs_resolves():
    broken = []
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO)}: {target}")
    assert not broken, broken


def config_fields(cls=ExperimentConfig, prefix: str = "") -> list[str]:
    names = []
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[field.name]):
            names += config_fields(hints[field.name], f"{prefix}{field.name}.")
        else:
            names.append(f"{prefix}{field.name}")
    return names


def test_every_config_field_is_in_the_usage_reference():
    usage = (REPO / "docs" / "usage.md").read_text(encoding="utf-8")
    sections = ("train.smart.", "train.distill.")  # documented as one row each, with their fields
    missing = [name for name in config_fields() if f"`{name}`" not in usage and name not in usage
               and not (name.startswith(sections) and f"`{name.rsplit('.', 1)[0]}`" in usage)]
    assert not missing, missing


def test_the_methods_page_shows_the_shipped_search_file():
    import yaml

    page = (REPO / "docs" / "methods.md").read_text(encoding="utf-8")
    block = page.split("# recipes/search/quickstart.yaml, as shipped", 1)[1].split("\n", 1)[1].split("```", 1)[0]
    shipped = yaml.safe_load((REPO / "recipes" / "search" / "quickstart.yaml").read_text(encoding="utf-8"))
    assert yaml.safe_load(block) == shipped
