"""The user docs hold together: every relative link in README.md and docs/*.md resolves inside
the repository (anchors included), and docs/configuration.md names every setting."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest

from processor_image.service.config import ServiceConfig
from session_manager.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _prose(path: Path) -> str:
    return _FENCE.sub("", path.read_text(encoding="utf-8"))


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    anchors: set[str] = set()
    for line in _prose(path).splitlines():
        if match := re.match(r"#{1,6} (.+)$", line):
            slug = _slug(match.group(1))
            n, unique = 0, slug
            while unique in anchors:
                n += 1
                unique = f"{slug}-{n}"
            anchors.add(unique)
    return anchors


def _links(path: Path) -> list[str]:
    prose = _prose(path)
    # Inline code may contain brackets; links inside it are not links.
    return _LINK.findall(_CODE.sub("", prose))


def test_the_documents_exist() -> None:
    names = {path.name for path in DOCUMENTS}
    assert {
        "README.md",
        "errors.md",
        "processor-api.md",
        "session-manager-api.md",
        "configuration.md",
        "deployment.md",
        "operations.md",
    } <= names


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves_inside_the_repository(document: Path) -> None:
    broken = []
    for target in _links(document):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            assert "shared/" not in target, target
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (document.parent / file_part).resolve() if file_part else document
        if not resolved.is_relative_to(ROOT) or not resolved.exists():
            broken.append(f"{target}: no such file in the repository")
            continue
        if anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(f"{target}: no heading #{anchor} in {resolved.name}")
    assert not broken, broken


def test_the_link_check_finds_a_broken_link(tmp_path: Path) -> None:
    """The checks above can fail: a link outside and a missing anchor are both seen."""
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n[out](../shared/spec.md) [anchor](#nowhere) `[x](y)`\n")
    assert _links(page) == ["../shared/spec.md", "#nowhere"]
    assert "nowhere" not in _anchors(page)
    assert _slug("`GET /pattern/{pattern_id}`") == "get-patternpattern_id"


def test_configuration_names_every_setting() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    internal = {"ADMIN_TOKEN_GENERATED", "GENERATED_API_KEY"}  # set by the manager, not read
    manager = {field.name.upper() for field in msgspec.structs.fields(Settings)} - internal
    env_example = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M))
    processor_source = (ROOT / "processor_image" / "service" / "config.py").read_text()
    processor = set(re.findall(r'environ.get\("([A-Z_]+)"', processor_source))
    processor |= set(re.findall(r'_int\(environ, "([A-Z_]+)"', processor_source))
    assert len(processor) > 10
    assert {field.name for field in msgspec.structs.fields(ServiceConfig)}  # still a Struct
    missing = sorted(name for name in manager | env_example | processor if f"`{name}`" not in text)
    assert not missing, missing
