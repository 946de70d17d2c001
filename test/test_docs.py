"""The user documentation and the ready-made views, checked without ROS.

* Every relative link in README.md and docs/*.md points to a file that exists and, with
  a ``#fragment``, to a heading of that file (GitHub's anchor rules).
* config/depth_pro.rviz (YAML) and config/depth_pro.foxglove.json (JSON) parse, show
  topics the node publishes, and setup.py installs them.
"""

from __future__ import annotations

import json
import re
import runpy
from pathlib import Path

import pytest
import setuptools
import yaml

from depth_pro_ros.stream.outputs import OUTPUT_TOPICS

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
RVIZ = REPO / "config" / "depth_pro.rviz"
FOXGLOVE = REPO / "config" / "depth_pro.foxglove.json"
# The node's output topics with no namespace and one camera, and those the views show.
PUBLISHED = {f"/{relative}" for relative in OUTPUT_TOPICS}
SHOWN = {"/depth", "/depth/colorized", "/points"}

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _prose(text: str) -> str:
    """``text`` without fenced code blocks (whose ``#`` lines are not headings)."""
    return _FENCE.sub("", text)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces -> '-'."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for line in _prose(path.read_text()).splitlines():
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        slug = _slug(match.group(1))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _relative_links(path: Path) -> list[str]:
    text = _CODE_SPAN.sub(lambda m: " " * len(m.group()) if "](" in m.group() else m.group(),
                          _prose(path.read_text()))
    return [target for target in _LINK.findall(text)
            if not re.match(r"[a-z][a-z0-9+.-]*:", target, re.I)]  # http:, mailto: ...


def test_slug_follows_github():
    assert _slug("Photos: `depth-pro-ros image`") == "photos-depth-pro-ros-image"
    assert _slug("A fleet's bags: `depth-pro-ros bags`") == "a-fleets-bags-depth-pro-ros-bags"
    assert _slug("Several cameras, one model") == "several-cameras-one-model"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(doc):
    broken = []
    for target in _relative_links(doc):
        file_part, _, fragment = target.partition("#")
        linked = (doc.parent / file_part).resolve() if file_part else doc
        if not linked.exists():
            broken.append(f"{target}: no file {linked}")
        elif fragment and linked.suffix == ".md" and fragment not in _anchors(linked):
            broken.append(f"{target}: no heading #{fragment} in {linked.name}")
    assert not broken, f"{doc.name}: " + "; ".join(broken)


def test_readme_stays_short():
    assert len((REPO / "README.md").read_text().splitlines()) <= 320


def _rviz_topics(node) -> list[str]:
    """Every ``Topic: {Value: ...}`` of the RViz config, at any depth."""
    found = []
    if isinstance(node, dict):
        topic = node.get("Topic")
        if isinstance(topic, dict) and "Value" in topic:
            found.append(topic["Value"])
        for value in node.values():
            found += _rviz_topics(value)
    elif isinstance(node, list):
        for value in node:
            found += _rviz_topics(value)
    return found


def test_rviz_config_shows_the_published_topics():
    config = yaml.safe_load(RVIZ.read_text())
    manager = config["Visualization Manager"]
    displays = {d["Topic"]["Value"]: d["Class"] for d in manager["Displays"] if "Topic" in d}
    assert set(displays) == SHOWN and SHOWN <= PUBLISHED
    assert displays == {"/depth": "rviz_default_plugins/Image",
                        "/depth/colorized": "rviz_default_plugins/Image",
                        "/points": "rviz_default_plugins/PointCloud2"}
    assert set(_rviz_topics(config)) <= PUBLISHED
    # The placeholder the README documents, with the comment saying to change it.
    assert manager["Global Options"]["Fixed Frame"] == "camera_optical_frame"
    assert "CHANGE IT" in RVIZ.read_text()


def test_foxglove_layout_shows_the_published_topics():
    layout = json.loads(FOXGLOVE.read_text())
    panels = layout["configById"]
    images = {config["imageMode"]["imageTopic"] for key, config in panels.items()
              if key.startswith("Image!")}
    clouds = {topic for key, config in panels.items() if key.startswith("3D!")
              for topic, settings in config["topics"].items() if settings.get("visible")}
    assert images == {"/depth", "/depth/colorized"} and clouds == {"/points"}
    calibrations = {config["imageMode"].get("calibrationTopic") for config in panels.values()}
    assert images | clouds == SHOWN and calibrations - {None} <= PUBLISHED
    # Every panel of the configuration is placed in the layout tree, and only those.
    placed, stack = set(), [layout["layout"]]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            placed.add(node)
        else:
            stack += [node["first"], node["second"]]
    assert placed == set(panels)


def test_setup_installs_the_views(monkeypatch):
    captured = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: captured.update(kwargs))
    monkeypatch.chdir(REPO)  # setup.py globs relative to the repository root
    runpy.run_path(str(REPO / "setup.py"), run_name="__main__")
    installed = dict(captured["data_files"])["share/depth_pro_ros/config"]
    assert {"config/depth_pro.yaml", "config/depth_pro.rviz",
            "config/depth_pro.foxglove.json"} <= set(installed)
