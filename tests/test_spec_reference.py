"""docs/spec.md is what the spec's models say now, and every relative link in the README and docs/
leads to a file (and heading) that exists."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, Field

from trbench.config.reference import _Section, collect_sections, section_text, slug, spec_reference
from trbench.config.servers import SERVER_SETTINGS

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_docs_spec_is_what_the_models_give():
    assert (ROOT / "docs/spec.md").read_text() == spec_reference(), (
        "docs/spec.md differs from the spec's pydantic models; run `make docs`")


def test_reference_has_every_field_of_every_section_and_provider():
    text = spec_reference()
    sections = collect_sections()
    for provider in SERVER_SETTINGS:
        assert f"## server (provider: {provider})" in text
    for section in sections:
        body = text.split(f"## {section.heading}\n", 1)[1].split("\n## ", 1)[0]
        for name, field in section.model.model_fields.items():
            if not field.exclude:
                assert f"| `{name}` |" in body, f"{section.heading}.{name} missing"


class _Sample(BaseModel):
    bare: int = 1
    told: list[str] | None = Field(default=None, min_length=2, description="a | b")


def test_a_field_without_description_gets_type_and_default_only():
    rows = section_text(_Section(_Sample, "sample", "sample"), {}).splitlines()
    assert "| `bare` | integer | `1` |  |" in rows
    assert "| `told` | list of string \\| null, at least 2 items | `null` | a \\| b |" in rows


def _links(text: str) -> list[str]:
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # code blocks hold commands, not links
    text = re.sub(r"`[^`\n]*`", "", text)
    return re.findall(r"\]\(([^)\s]+)\)", text)


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {slug(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}


def test_relative_links_resolve():
    broken = []
    for page in PAGES:
        for link in _links(page.read_text()):
            if re.match(r"[a-z]+:", link):
                continue  # http(s), mailto: not ours to check offline
            target, _, anchor = link.partition("#")
            path = (page.parent / target).resolve() if target else page
            if not path.exists():
                broken.append(f"{page.relative_to(ROOT)}: {link} (no such file)")
            elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
                broken.append(f"{page.relative_to(ROOT)}: {link} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)
