"""The README and every docs/ page stay true to the code they show (issue 36 item 4: the README's text moved there).

Beside tests/core/test_readme.py, which runs the README's "Wrapping a model" blocks: every link and anchor
resolves, every python block compiles, every YAML block parses, and every `lara` or `python -m lara.X` line of a
bash block names a real command whose flags parse (a `lara train` line, or `-m lara.adapters.cli` under accelerate
or torchrun: its preset and overrides load into a valid config). Lines holding a `...` placeholder are skipped.
The README's results lines are checked to be docs/results.md's own.
"""

from __future__ import annotations

import argparse
import importlib
import re
import shlex
from pathlib import Path

import pytest
import yaml

from lara.adapters.config import load_recipe
from lara.cli import SUBCOMMANDS

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXPECTED_PAGES = {"train", "wrap", "data", "evaluate", "probe", "robot", "scale", "demo", "results", "measured"}


def blocks(page: Path, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", page.read_text(), flags=re.S | re.M)


def command_lines(page: Path) -> list[str]:
    """The bash blocks' commands: continuation lines joined, comments and `#!`/`#SBATCH` lines dropped."""
    lines = []
    for block in blocks(page, "bash"):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lowercased, punctuation but `-` and `_` dropped, spaces as `-`."""
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    return {re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
            for title in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


def test_the_readme_is_a_front_door_and_docs_has_a_page_per_task():
    assert {page.stem for page in PAGES[1:]} == EXPECTED_PAGES
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    for heading in ("## Quick start", "### Dependencies: the lock", "## Wrapping a model", "## Results"):
        assert f"\n{heading}\n" in readme, heading  # CI and newcomers read these in the README
    for name in EXPECTED_PAGES:
        assert f"](docs/{name}.md)" in readme, f"docs/{name}.md is not linked from the README"


def test_the_readme_results_are_the_seed_level_bullets_of_docs_results():
    """The README's results lines are copied from the top of docs/results.md, never written apart from them."""
    readme = (ROOT / "README.md").read_text().split("\n## Results\n", 1)[1].split("\n## ", 1)[0]
    bullets = re.findall(r"^- .*?(?=\n- |\n\n)", readme, flags=re.S | re.M)
    assert len(bullets) == 3
    results = (ROOT / "docs" / "results.md").read_text()
    for bullet in bullets:
        assert bullet in results


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_and_anchors_resolve(page):
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.exists(), f"{page.name}: link to {target}, which does not exist"
        if anchor:
            assert anchor in anchors(file), f"{page.name}: link to {target}, which has no such heading"


def expand(path: str) -> list[str]:
    """A shell brace group spelled out: `a{,_b}.{json,png}` -> a.json, a.png, a_b.json, a_b.png."""
    group = re.search(r"\{([^{}]*)\}", path)
    if group is None:
        return [path]
    return [p for choice in group[1].split(",") for p in expand(path[:group.start()] + choice + path[group.end():])]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_cited_records_exist(page):
    """Every committed record a page names (`results/...`, relative to the project) is where it says."""
    cited = re.findall(r"(?<![\w/.])results/[\w./{},-]*[\w/}]", page.read_text())
    for path in (p for name in cited for p in expand(name)):
        assert (ROOT / path).exists(), f"{page.name}: names {path}, which does not exist"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_python_blocks_compile_and_yaml_blocks_parse(page):
    for i, block in enumerate(blocks(page, "python")):
        compile(block, f"{page.name}: python block {i}", "exec")
    for block in blocks(page, "yaml"):
        assert isinstance(yaml.safe_load(block), dict)


class Parsed(Exception):
    """Raised where a command would start its work: its flags parsed."""


def lara_argv(line: str) -> list[str] | None:
    """`lara ...` of a command line (env assignments and a trailing `# comment` removed), as argv after `lara`;
    `accelerate launch`/`torchrun` ... `-m lara.adapters.cli` is `lara train`, `python -m lara.X ...` is
    `["-m", "lara.X", ...]`. None when it runs no `lara`."""
    words = shlex.split(line, comments=True)
    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
        words = words[1:]
    if words[:1] == ["lara"]:
        return words[1:]
    if words[:1] in (["accelerate"], ["torchrun"], ["srun"]) and "lara.adapters.cli" in words:
        return ["train", *words[words.index("lara.adapters.cli") + 1:]]
    if words[:2] == ["python", "-m"] and words[2].startswith("lara."):
        return words[1:]
    return None


COMMANDS = [(page.name, line) for page in PAGES for line in command_lines(page)
            if lara_argv(line) is not None and "..." not in lara_argv(line) and "[...]" not in line]


def test_every_page_shows_lara_commands_that_this_test_checks():
    assert len(COMMANDS) > 50  # the extraction still finds the commands (each is checked below)


@pytest.mark.parametrize(("page", "line"), COMMANDS, ids=[f"{p}: {line[:60]}" for p, line in COMMANDS])
def test_lara_commands_parse(page, line, monkeypatch):
    argv = lara_argv(line)
    command, rest = argv[0], argv[1:]
    if command == "-m":  # python -m lara.X: its main parses the flags
        module, rest = rest[0], rest[1:]
    else:
        assert command in SUBCOMMANDS, f"{page}: `lara {command}` is not a command ({sorted(SUBCOMMANDS)})"
        module = SUBCOMMANDS[command][0]
    if command == "train":
        if rest[:1] != ["--list"]:
            load_recipe(rest[0], [r for r in rest[1:] if not r.startswith("--")])  # preset and overrides validate
        return

    for name in ("parse_args", "parse_intermixed_args"):
        def parse_then_stop(parser, args=None, namespace=None, parse=getattr(argparse.ArgumentParser, name)):
            parse(parser, args, namespace)  # a bad flag raises here (lara's parsers: InputError, ended as exit 2)
            raise Parsed

        monkeypatch.setattr(argparse.ArgumentParser, name, parse_then_stop)
    main = importlib.import_module(module).main
    with pytest.raises(Parsed):
        main(rest)
