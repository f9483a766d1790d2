"""The README is the front door: its quick start runs, its commands exist with the options it
shows, its links resolve, and it stays short. Every check runs the real `flowact` CLI."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TEXT = README.read_text()
MAX_LINES = 250
# wide, plain help output: no wrapping inside an example or an option name
HELP_ENV = {**os.environ, "COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"}


def flowact_argv() -> list[str]:
    exe = shutil.which("flowact")
    return [exe] if exe else [sys.executable, "-m", "flowact.cli"]


def run_flowact(args: list[str], timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        flowact_argv() + args, capture_output=True, text=True, timeout=timeout, env=kw.pop("env", HELP_ENV), **kw
    )


def fenced_blocks(text: str) -> list[tuple[int, list[str]]]:
    """(line number of the opening fence, lines inside) for every ``` block."""
    blocks, cur, start = [], None, 0
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            if cur is None:
                cur, start = [], n
            else:
                blocks.append((start, cur))
                cur = None
        elif cur is not None:
            cur.append(line)
    return blocks


def quick_start() -> list[str]:
    """The fenced block right after the `<!-- quick-start -->` marker."""
    lines = TEXT.splitlines()
    marker = lines.index("<!-- quick-start -->") + 1
    for start, body in fenced_blocks(TEXT):
        if start == marker + 1:
            return [ln.strip() for ln in body if ln.strip()]
    raise AssertionError("README: no fenced block right after <!-- quick-start -->")


_FLOWACT = re.compile(r"(?:^|[\s|`])flowact\s+([a-z][a-z-]*)([^|#`]*)")


def readme_uses() -> dict[str, set[str]]:
    """Every `flowact COMMAND [--option ...]` the README shows, in fenced blocks and in the
    commands table: {command: options used with it}."""
    sources = [ln for _, body in fenced_blocks(TEXT) for ln in body]
    sources += [ln.replace("\\|", "/").split("|")[1] for ln in TEXT.splitlines() if ln.startswith("| `flowact ")]
    uses: dict[str, set[str]] = {}
    for ln in sources:
        for m in _FLOWACT.finditer(ln):
            uses.setdefault(m.group(1), set()).update(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", m.group(2)))
    return uses


def cli_commands() -> set[str]:
    import typer

    from flowact.cli import app

    return set(typer.main.get_command(app).commands)


def gh_slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    s = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return s.replace(" ", "-")


def anchors(md: Path) -> set[str]:
    return {gh_slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", md.read_text(), re.M)}


# -- the front door stays a front door --------------------------------------------------


def test_readme_is_short():
    n = len(TEXT.splitlines())
    assert n <= MAX_LINES, f"README.md has {n} lines (limit {MAX_LINES}): move detail into docs/"


@pytest.mark.parametrize(
    "md", [README] + sorted((ROOT / "docs").glob("*.md")), ids=lambda p: p.relative_to(ROOT).as_posix()
)
def test_relative_links_resolve(md: Path):
    bad = []
    for target in re.findall(r"\]\(([^)\s]+)\)", md.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (md.parent / path).resolve() if path else md
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target}: no heading with anchor #{anchor} in {dest.name}")
    assert not bad, f"{md.name}: broken links: {bad}"


def test_readme_links_every_doc():
    linked = {Path(t.partition("#")[0]).name for t in re.findall(r"\]\((docs/[^)\s]+)\)", TEXT)}
    docs = {p.name for p in (ROOT / "docs").glob("*.md")}
    assert docs <= linked, f"docs not linked from README.md: {sorted(docs - linked)}"


def test_readme_file_pointers_exist():
    """Paths the README names in backticks (scripts/x.py, model/lips.py, examples/...) exist."""
    missing = []
    for tok in re.findall(r"`([^`\s]+\.(?:py|sh|yaml|png|wav|jsonl|md|safetensors))`", TEXT):
        if tok.startswith("path/to/"):
            continue
        roots = (ROOT, ROOT / "src" / "flowact", ROOT / "examples")
        if not any((r / tok).exists() for r in roots):
            missing.append(tok)
    for tok in re.findall(r"(?<![\w/])examples/[\w.-]+", TEXT):
        if not (ROOT / tok).exists():
            missing.append(tok)
    assert not missing, f"README.md names files that do not exist: {sorted(set(missing))}"


# -- the commands it shows exist, with the options it shows --------------------------------


def test_commands_table_lists_every_command():
    table = {m.group(1) for m in re.finditer(r"^\| `flowact ([a-z-]+)", TEXT, re.M)}
    assert table == cli_commands(), (
        f"README commands table {sorted(table)} != flowact's commands {sorted(cli_commands())}"
    )


@pytest.mark.parametrize("command", sorted(readme_uses()))
def test_readme_command_help_runs_and_knows_its_options(command: str):
    assert command in cli_commands(), f"README shows `flowact {command}`, which does not exist"
    r = run_flowact([command, "--help"])
    assert r.returncode == 0, r.stderr
    shown = set(re.findall(r"--[a-z][a-z0-9-]*", r.stdout))
    unknown = readme_uses()[command] - shown
    assert not unknown, f"README shows `flowact {command}` with options it does not have: {sorted(unknown)}"


@pytest.mark.parametrize("command", [None] + sorted(cli_commands()), ids=lambda c: c or "flowact")
def test_help_examples_name_real_files(command):
    r = run_flowact(([command] if command else []) + ["--help"])
    assert r.returncode == 0, r.stderr
    missing = [t for t in re.findall(r"(?<![\w/])examples/[\w.-]+", r.stdout) if not (ROOT / t).exists()]
    assert not missing, f"`flowact {command or ''} --help` names files that do not exist: {missing}"


def test_help_starts_with_the_readme_quick_start():
    render = [ln for ln in quick_start() if ln.startswith("flowact render")]
    assert render, "the quick start has no `flowact render` line"
    top = run_flowact(["--help"]).stdout
    start = re.search(r"Start with:\s+(flowact [^\n]*?)\s*$", top, re.M)
    assert start and start.group(1) == render[0], f"`flowact --help` starts with {start and start.group(1)!r}"
    examples = re.findall(r"^\s*(flowact render [^\n]*?)\s*$", run_flowact(["render", "--help"]).stdout, re.M)
    assert examples and examples[0] == render[0], f"`flowact render --help` first example: {examples[:1]}"


# -- the quick start works -------------------------------------------------------------


def test_quick_start_block():
    lines = quick_start()
    assert "bash scripts/setup.sh" in lines and (ROOT / "scripts" / "setup.sh").exists()
    assert "python -m pytest" in lines
    assert all(ln.split()[0] in ("bash", "flowact", "python") for ln in lines), lines


def test_quick_start_render_runs(tmp_path):
    """The quick start's render, as written, on its first second (--seconds 1) into tmp."""
    from flowact.media.probe import probe

    renders = [ln for ln in quick_start() if ln.startswith("flowact ")]
    assert renders
    for k, line in enumerate(renders):
        args = shlex.split(line)[1:]
        out = tmp_path / f"quick_{k}.mp4"
        r = run_flowact(args + ["--seconds", "1", "--out", str(out)], timeout=600, cwd=ROOT, env={**os.environ})
        assert r.returncode == 0, f"`{line}` failed ({r.returncode}):\n{r.stderr[-2000:]}"
        info = probe(out)
        assert info.video_codec == "h264" and info.audio_codec == "aac", info
        assert info.frames == round(1.0 * info.fps), info  # round(seconds * fps) frames
