"""CITATION.cff: valid Citation File Format 1.2.0, consistent with the licence and the course configuration."""
import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def load():
    return yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))


def test_required_keys_and_types_of_cff_1_2_0():
    cff = load()
    assert cff["cff-version"] == "1.2.0"
    for key in ("message", "title"):
        assert isinstance(cff[key], str) and cff[key].strip()
    assert isinstance(cff["authors"], list) and cff["authors"]
    for author in cff["authors"]:   # a person (family-names / given-names) or an entity (name)
        assert isinstance(author, dict) and (author.get("name") or author.get("family-names")), author
    assert cff.get("type", "software") in {"software", "dataset"}
    assert all(isinstance(k, str) and k for k in cff.get("keywords", []))
    allowed = {"cff-version", "message", "title", "abstract", "type", "authors", "license", "repository-code",
               "url", "keywords", "version", "date-released", "doi", "identifiers", "preferred-citation",
               "references", "contact", "commit", "license-url", "repository", "repository-artifact"}
    assert set(cff) <= allowed, set(cff) - allowed


def test_licence_and_repository_agree_with_the_project():
    cff = load()
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith(f"{cff['license']} License")
    repository = json.loads((ROOT / "mllib" / "course_config.json").read_text(encoding="utf-8"))["repository"]
    assert cff["repository-code"] == repository
    assert re.match(r"^https://", cff["url"])
