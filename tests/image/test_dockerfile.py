"""The Dockerfile, .dockerignore and scripts/image/ agree, checked without building (issue 14).

`make test-image` builds and runs the image, but takes a minute or more; these checks catch in
milliseconds what would otherwise fail only there: a COPY source missing from the build context,
an ARG used in a stage that did not declare it (it expands to nothing), a --build-arg the
scripts pass that the Dockerfile does not read, the two stages on different bases (the venv's
interpreter link would dangle).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Variables a stage may use without declaring them: set by the base image.
BASE_ENV = {"PATH"}


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Dockerfile:
    global_args: dict[str, str | None]
    stages: list[Stage]


def parse(text: str) -> Dockerfile:
    """Instructions, with continuation lines joined and comment lines dropped."""
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or (not line.strip() and not pending):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    global_args: dict[str, str | None] = {}
    stages: list[Stage] = []
    for entry in logical:
        keyword, _, rest = entry.strip().partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            words = rest.split()
            stages.append(Stage(words[0], words[2] if len(words) > 2 else str(len(stages))))
        elif stages:
            stages[-1].instructions.append((keyword, rest))
        elif keyword == "ARG":
            name, _, default = rest.partition("=")
            global_args[name] = default or None
    return Dockerfile(global_args, stages)


def variables(text: str) -> set[str]:
    return {a or b for a, b in re.findall(r"\$\{(\w+)[^}]*\}|\$(\w+)", text)}


def copy_sources(rest: str) -> tuple[list[str], dict[str, str]]:
    """A COPY's sources (the last word is the destination) and its --flags."""
    flags = dict(re.findall(r"--(\w+)=(\S+)", rest))
    rest = re.sub(r"--\w+=\S+\s*", "", rest)
    words = json.loads(rest) if rest.startswith("[") else rest.split()
    return words[:-1], flags


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse((ROOT / "Dockerfile").read_text())


def ignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """.dockerignore as (excludes, regex) pairs, in order: the last one matching wins."""
    patterns = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        glob = line.lstrip("!").strip("/")
        regex = re.escape(glob).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        patterns.append((not negated, re.compile(regex)))
    return patterns


def in_context(path: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether the build context holds `path`: a pattern matches it or one of its parents."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for excludes, regex in patterns:
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            included = not excludes
    return included


def test_copy_sources_exist_and_are_in_the_build_context(dockerfile: Dockerfile) -> None:
    patterns = ignore_patterns()
    for stage in dockerfile.stages:
        for keyword, rest in stage.instructions:
            if keyword not in ("COPY", "ADD"):
                continue
            sources, flags = copy_sources(rest)
            if "from" in flags:
                continue
            for source in sources:
                assert (ROOT / source).exists(), f"{keyword} {source}: no such file"
                assert in_context(source, patterns), f"{keyword} {source}: .dockerignore drops it"
                for child in (ROOT / source).rglob("*.py"):
                    rel = child.relative_to(ROOT).as_posix()
                    assert in_context(rel, patterns), f"{rel} is not in the build context"


@pytest.mark.parametrize("path", [
    ".venv/bin/python", ".git/HEAD", ".mypy_cache/x", ".pytest_cache/x", ".ruff_cache/x",
    "benchmarks/suite.py", "bench-results/run.json", "docs/benchmarks.md", "tests/conftest.py",
    "src/poolgate/__pycache__/cli.cpython-311.pyc", "src/poolgate.egg-info/PKG-INFO",
])
def test_dockerignore_keeps_out(path: str) -> None:
    assert not in_context(path, ignore_patterns())


def test_args_are_declared_where_used_and_used_where_declared(dockerfile: Dockerfile) -> None:
    used_globally = {v for stage in dockerfile.stages for v in variables(stage.base)}
    assert used_globally <= set(dockerfile.global_args), "FROM uses an undeclared ARG"
    declared_in_stages: set[str] = set()
    for stage in dockerfile.stages:
        known = set(BASE_ENV)
        for keyword, rest in stage.instructions:
            if keyword == "ARG":
                known.add(rest.partition("=")[0])
            elif keyword == "ENV":
                used = variables(rest) - known
                assert not used, f"stage {stage.name}: ENV uses {used} undeclared here"
                known |= set(re.findall(r"(\w+)=", rest))
            elif keyword != "RUN":  # RUN is shell: its $VARS are the shell's
                used = variables(rest) - known
                assert not used, f"stage {stage.name}: {keyword} uses {used} undeclared here"
        declared_in_stages |= known
    unused = set(dockerfile.global_args) - used_globally - declared_in_stages
    assert not unused, f"global ARGs {unused} are never used"


def test_the_build_script_passes_only_args_the_dockerfile_reads(dockerfile: Dockerfile) -> None:
    passed = set(re.findall(r"--build-arg (\w+)=", (ROOT / "scripts/image/build.sh").read_text()))
    declared = set(dockerfile.global_args)
    for stage in dockerfile.stages:
        declared |= {rest.partition("=")[0] for kw, rest in stage.instructions if kw == "ARG"}
    assert passed and passed <= declared, f"--build-arg {passed - declared} is read by no ARG"


def test_runtime_stage_runs_the_build_stages_venv_as_uid_10001(dockerfile: Dockerfile) -> None:
    build, runtime = dockerfile.stages[0], dockerfile.stages[-1]
    # The venv's bin/python links to the base's python3: both stages need the same base.
    assert build.base == runtime.base
    venv = next(re.search(r"-m venv (\S+)", rest) for kw, rest in build.instructions
                if kw == "RUN" and "-m venv" in rest)
    assert venv is not None
    copies = [copy_sources(rest) for kw, rest in runtime.instructions if kw == "COPY"]
    assert ([venv[1]], {"from": build.name}) in copies, "the runtime stage does not copy the venv"
    settings = dict(runtime.instructions)
    assert settings["USER"] == "10001:10001"  # numeric: runAsNonRoot can verify it
    assert {"8080", "9901"} <= set(settings["EXPOSE"].split())
