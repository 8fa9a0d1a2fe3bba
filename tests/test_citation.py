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
    if repository is None:  # not published yet: no repository that anyone could register under that name
        assert "repository-code" not in cff and "url" not in cff
    else:
        assert cff["repository-code"] == repository == cff["url"]
        assert re.match(r"^https://", cff["url"])


def test_set_repository_writes_the_citation_and_unpublishing_removes_it():
    from mllib.course.colab import sync_citation
    from mllib.course.config import CourseConfig

    text = (ROOT / "CITATION.cff").read_text(encoding="utf-8")
    published = sync_citation(text, CourseConfig(repository="https://github.com/someone/course", ref="main"))
    assert 'repository-code: "https://github.com/someone/course"' in published
    assert 'url: "https://github.com/someone/course"' in published
    assert sync_citation(published, CourseConfig(repository=None, ref="main")) == sync_citation(text, CourseConfig(repository=None, ref="main"))
