"""The bundles' documents: every relative link and anchor resolves, every config a README command names exists, the
user's guides stay short and say what the models are for, and every result figure is linked from some document."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUNDLES = ("exudate_dsm", "fundus_lesion_hrdecoder")
DOCUMENTS = sorted(
    [REPO / "README.md", *(REPO / "docs").rglob("*.md"), *(REPO / "bundles").glob("*/docs/*.md")]
)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor of a markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {_slug(line.lstrip("#")) for line in text.splitlines() if re.match(r"#{1,6} ", line)}


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO)))
def test_readme_links_and_anchors_resolve(document):
    broken = []
    for target in LINK.findall(document.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: outside the repository
        file, _, anchor = target.partition("#")
        path = (document.parent / file).resolve() if file else document
        if not path.exists():
            broken.append(target)
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            broken.append(target)
    assert not broken, f"{document.relative_to(REPO)}: links that resolve to nothing: {broken}"


@pytest.mark.parametrize("bundle", BUNDLES)
def test_readme_is_a_short_users_guide_whose_commands_name_existing_configs(bundle):
    readme = REPO / "bundles" / bundle / "docs" / "README.md"
    text = readme.read_text()
    assert len(text.splitlines()) <= 210, f"{readme}: the user's guide is over ~200 lines; history goes to docs/results"
    assert "Research use only; not a medical device." in text
    for heading in ("Shipped model", "Commands", "Intended use and limitations", "Measurements"):
        assert f"## {heading}" in text, f"{readme}: no section {heading!r}"
    commands = "\n".join(re.findall(r"```bash\n(.*?)```", text, flags=re.S))
    for kind in ("run training", "run evaluating", "inference.json", "mlflow ui"):
        assert kind in commands, f"{readme}: no {kind!r} command"
    configs = set(re.findall(r"bundles/[\w]+/configs/[\w]+\.json", commands))
    missing = sorted(c for c in configs if not (REPO / c).is_file())
    assert configs and not missing, f"{readme}: commands name configs that do not exist: {missing}"


def test_every_result_figure_is_linked_from_a_document():
    text = "\n".join(p.read_text() for p in DOCUMENTS)
    figures = sorted((REPO / "docs" / "results" / "img").iterdir())
    assert figures
    assert not [f.name for f in figures if f.name not in text]
