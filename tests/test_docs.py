"""The documentation a newcomer reads: every relative link lands on a file and heading that exist,
and the README and the model card stay short enough to read (issue 13: about 8 KB, 120 lines)."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "models" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def github_anchor(heading: str) -> str:
    """GitHub's id for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    body = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {github_anchor(m.group(1)) for m in re.finditer(r"^#+ (.+)$", body, flags=re.M)}


def test_github_anchor_matches_githubs_rule():
    assert github_anchor("Classifier guidance, and whether the score still means anything") == \
        "classifier-guidance-and-whether-the-score-still-means-anything"
    assert github_anchor("The ONNX contract (`dcgan_export/contract.py`)") == "the-onnx-contract-dcgan_exportcontractpy"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not checked offline
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: broken links {broken}"


def test_readme_and_model_card_stay_short():
    assert len((ROOT / "README.md").read_bytes()) <= 9 * 1024
    assert len((ROOT / "models" / "README.md").read_text().splitlines()) <= 130
