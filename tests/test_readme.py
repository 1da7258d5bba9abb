"""The README's code blocks, run as a reader would: in order, from one empty folder.

Every ```bash and ```python block runs unless an HTML comment right above it says otherwise:
`<!-- readme-test: MODE (REASON) -->` with MODE `skip` (not run: the reason says who runs it),
`parse-only` (every `ias` command in it must parse with the real argument parser, so its
flags cannot drift; it needs something this machine lacks: a GPU, the hub, your own model)
or `server` (its first line starts a server in the background, the rest talk to it).
Sizes are made small (`--limit 200` -> 6, `n_max=64` -> 4 ...) so the suite stays short;
everything else runs as written. `pip` lines are not run: the test environment is the
README's own test install, which has them.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from ias.cli import build_parser

README = Path(__file__).resolve().parent.parent / "README.md"
MARKER = re.compile(r"<!-- readme-test: (skip|parse-only|server) \((.+)\) -->")
FENCE = re.compile(r"^```(\w*)\s*$")
#: The small sizes the blocks run at: flag (CLI spelling) -> largest value kept.
SMALL = {"limit": 6, "n": 2, "n-traj": 2, "n-mc": 2, "n-max": 4}


@dataclass(frozen=True)
class Block:
    language: str
    code: str
    mode: str  # run, skip, parse-only or server
    reason: str
    line: int  # the fence's line in README.md, for messages

    def __str__(self) -> str:
        return f"README.md:{self.line} ({self.language}, {self.mode})"


def readme_blocks() -> list[Block]:
    """The bash and python blocks of the README, each with the mode its marker gives."""
    lines = README.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        end = next(k for k in range(i + 1, len(lines)) if lines[k].startswith("```"))
        if fence.group(1) in ("bash", "python"):
            above = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
            marker = MARKER.fullmatch(above.strip())
            if above.strip().startswith("<!-- readme-test") and not marker:
                raise AssertionError(f"README.md:{i}: malformed marker {above!r}")
            mode, reason = (marker.group(1), marker.group(2)) if marker else ("run", "")
            blocks.append(Block(fence.group(1), "\n".join(lines[i + 1 : end]), mode, reason, i + 1))
        i = end + 1
    return blocks


def shrink(code: str, language: str) -> str:
    """The same commands at the small sizes (`--n-max 64` -> `--n-max 4`, `n_max=64` -> `n_max=4`)."""
    names = "|".join(sorted(SMALL, key=len, reverse=True))
    if language == "bash":
        pattern, key = re.compile(rf"(--({names})[ =])(\d+)\b"), lambda m: m.group(2)
    else:
        pattern = re.compile(rf"\b(({'|'.join(n.replace('-', '_') for n in SMALL)})=)(\d+)\b")
        key = lambda m: m.group(2).replace("_", "-")  # noqa: E731
    return pattern.sub(lambda m: f"{m.group(1)}{min(int(m.group(3)), SMALL[key(m)])}", code)


def shell_commands(code: str) -> list[str]:
    """The block's commands, continuation lines joined, comments and `pip` lines dropped."""
    joined = re.sub(r"\\\n", " ", code)
    return [line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith(("#", "pip "))]


def ias_argvs(code: str) -> list[list[str]]:
    """Every `ias ...` command of a bash block as argv, with the block's VAR=value assignments expanded."""
    variables: dict[str, str] = {}
    argvs = []
    for command in shell_commands(code):
        words = shlex.split(command, comments=True)
        assignment = re.fullmatch(r"([A-Z_][A-Z0-9_]*)=(.*)", command.strip())
        if assignment and len(words) == 1:
            variables[assignment.group(1)] = words[0].split("=", 1)[1]
            continue
        expanded = shlex.split(
            re.sub(r"\$(\w+)", lambda m: variables.get(m.group(1), m.group(0)), command), comments=True
        )
        if expanded and expanded[0] == "ias":
            argvs.append(expanded[1:])
    return argvs


def _env() -> dict:
    """The environment a reader's shell has after the README's install: this Python's `ias` first."""
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "COLUMNS": "160",
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(argv: list[str], folder: Path, block: Block, timeout: float) -> str:
    done = subprocess.run(argv, cwd=folder, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (
        f"{block} failed (exit {done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    )
    return done.stdout


def run_block(block: Block, folder: Path) -> str:
    code = shrink(block.code, block.language)
    if block.language == "python":
        return _run([sys.executable, "-c", code], folder, block, timeout=600)
    if block.mode == "server":
        return _run_with_server(code, folder, block)
    return _run(["bash", "-e", "-o", "pipefail", "-c", "\n".join(shell_commands(code))], folder, block, timeout=900)


def _run_with_server(code: str, folder: Path, block: Block) -> str:
    """The first command in the background (on a free port), the others against it."""
    port = _free_port()
    first, *rest = shell_commands(code.replace("8000", str(port)))
    server = subprocess.Popen(
        ["bash", "-c", f"exec {first}"],
        cwd=folder,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            line = server.stdout.readline()
            assert line, f"{block}: the server exited before it served (exit {server.poll()})"
            if line.startswith("serving"):
                break
        return _run(["bash", "-e", "-c", "\n".join(rest)], folder, block, timeout=120)
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_every_block_has_a_known_mode_and_the_runnable_ones_are_there():
    blocks = readme_blocks()
    assert all(b.mode in ("run", "skip", "parse-only", "server") for b in blocks)
    assert all(b.reason for b in blocks if b.mode != "run"), "a block not run must say why"
    runnable = [b for b in blocks if b.mode in ("run", "server")]
    assert any(b.language == "python" for b in runnable) and sum(b.language == "bash" for b in runnable) >= 3
    # The first block is the README's contract: install and run the demo; install and run the tests.
    assert blocks[0].code.splitlines()[0].startswith("pip install -e . && ias demo")


def test_shrink_makes_sizes_small_and_leaves_the_rest():
    assert (
        shrink("ias eval --limit 200 --n-max 64 --n 16 --seed 64 --out runs/n-max", "bash")
        == "ias eval --limit 6 --n-max 4 --n 2 --seed 64 --out runs/n-max"
    )
    assert shrink("ias.evaluate(n_max=64, limit=3, seed=200)", "python") == "ias.evaluate(n_max=4, limit=3, seed=200)"


@pytest.mark.parametrize("block", [b for b in readme_blocks() if b.language == "bash"], ids=str)
def test_every_ias_command_in_the_readme_parses(block):
    """Flags in the README exist: the real parser reads every `ias` command, runnable or not."""
    parser = build_parser()
    for argv in ias_argvs(block.code):
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"{block}: `ias {' '.join(argv)}` does not parse")


@pytest.mark.slow
def test_readme_blocks_run_in_order(tmp_path):
    """The runnable blocks, in README order, in one empty folder (later blocks use earlier results)."""
    outputs = {block: run_block(block, tmp_path) for block in readme_blocks() if block.mode in ("run", "server")}
    assert (tmp_path / "runs" / "eval" / "summary.json").is_file()
    assert (tmp_path / "runs" / "e" / "compare.json").is_file()
    for block, output in outputs.items():
        if block.mode == "server":
            answer = json.loads(output)
            if "ias" in answer:  # a strategy's answer: one choice and its confidence
                assert len(answer["choices"]) == 1 and 0 <= answer["ias"]["confidence"] <= 1, output[:500]
            else:  # the curl asks for n = 4 samples
                assert len(answer["choices"]) == 4, f"{block}: {output[:500]}"
