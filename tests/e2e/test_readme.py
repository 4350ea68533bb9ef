"""The README, executed: every ```bash block runs, in order, in one bash session against a
fresh local stack, unless an HTML comment right before it says why it cannot run here; every
```python block runs in that session too, where it stands, with the project's
`.venv/bin/python` (it sees what the shell blocks before it exported).

The stack runs in a folder of its own (template, functions, and links to `.venv` and
`events`), so `creditml ledger verify` and `creditml invoke` in the README find this stack
and no other test's.

A newcomer following the README also met hundreds of "Connection pool is full" warnings in
the stack's output; the last test fires a burst at the shared e2e stack and asserts that its
output holds none.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from threading import Barrier

import httpx
import pytest

from tests.conftest import ROOT
from tests.e2e.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, RunningStack, start_stack

README = ROOT / "README.md"
# The admin the README's walk-through assumes by default (what `make dev` seeds).
README_ADMIN = "admin@creditml.local"
MAX_SKIPPED = 5
_FENCE = re.compile(r"^```(\S*)\s*$")
_SKIP = re.compile(r"^<!--\s*readme-test:\s*skip\s*\((?P<reason>.+)\)\s*-->$")
_MARKER = re.compile(r"<!--\s*readme-test")
_SHELL_TAGS = {"bash", "sh", "shell", "console", "zsh", "shell-session"}
_BLOCK_START = "@@readme-block {}@@"
POOL_FULL = "Connection pool is full"

# What some blocks must print, found by a piece of their code (each piece in exactly one).
EXPECTED_OUTPUT = {
    '"$API/auth/register"': ['"email":"ada@example.com"', '"role":"user"', '"balance":0'],
    '-X PATCH "$API/users/': ['"role":"publisher"'],
    "upload: HTTP": ["upload: HTTP 204"],
    "field status": ["ready"],
    "Idempotency-Key: ada-first-top-up": ['"amount":100', '"cost":4', '"balance":96'],
    '-i "$API/models/': ["idempotent-replayed: true", '{"balance":96}'],
    "creditml ledger verify\n": [": OK"],
    "except InsufficientCredits as error": ["refused: 2000 credits needed"],
    "program.load_model(": ["as a program, balance:", "same predictions: True"],
    "devices add": ["ada laptop"],
}


class ReadmeFormatError(ValueError):
    """A shell block or marker the test could not tell how to treat."""


_RUN_TAGS = {"bash", "python"}
_PYTHON_END = "CREDITML_README_PYTHON"


@dataclass(frozen=True)
class Block:
    """One fenced block of a markdown document that the session runs."""

    line: int
    code: str
    skip_reason: str | None
    language: str = "bash"

    def script(self) -> str:
        """The block as bash runs it."""
        if self.language == "python":
            return f".venv/bin/python - <<'{_PYTHON_END}'\n{self.code}{_PYTHON_END}\n"
        return self.code


def shell_blocks(text: str) -> list[Block]:
    """The ```bash and ```python blocks of `text`, each with the reason of a skip marker on
    the line right before its fence. Shell under any other tag, markers away from a bash
    or python fence and unclosed fences are errors: nothing may dodge the test by its
    spelling."""
    lines = text.splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        fence = _FENCE.match(line)
        if _MARKER.search(line):
            follows = _FENCE.match(lines[index + 1]) if index + 1 < len(lines) else None
            if (
                not _SKIP.match(line.strip())
                or follows is None
                or follows.group(1) not in _RUN_TAGS
            ):
                raise ReadmeFormatError(
                    f"line {index + 1}: a readme-test marker must be "
                    "`<!-- readme-test: skip (reason) -->` right before ```bash or ```python"
                )
        if fence is None:
            index += 1
            continue
        tag = fence.group(1).lower()
        if tag in _SHELL_TAGS - {"bash"}:
            raise ReadmeFormatError(f"line {index + 1}: shell block tagged {tag!r}; tag it bash")
        end = next((at for at in range(index + 1, len(lines)) if lines[at].strip() == "```"), None)
        if end is None:
            raise ReadmeFormatError(f"line {index + 1}: fence never closed")
        if tag in _RUN_TAGS:
            marker = _SKIP.match(lines[index - 1].strip()) if index else None
            code = "\n".join(lines[index + 1 : end]) + "\n"
            if _PYTHON_END in code:
                raise ReadmeFormatError(f"line {index + 1}: {_PYTHON_END} ends a python block")
            blocks.append(
                Block(
                    line=index + 1,
                    code=code,
                    skip_reason=marker.group("reason").strip() if marker else None,
                    language=tag,
                )
            )
        index = end + 1
    return blocks


def session_script(blocks: list[Block]) -> str:
    """One bash script running `blocks` in order, each announced on stdout by a marker."""
    parts = ["set -euo pipefail"]
    for number, block in enumerate(blocks):
        parts.append(f"printf '\\n%s\\n' '{_BLOCK_START.format(number)}'")
        parts.append(block.script())
    return "\n".join(parts) + "\n"


def split_output(output: str, count: int) -> list[str | None]:
    """Each block's output (None for blocks the session never reached)."""
    found: list[str | None] = [None] * count
    pieces = re.split(r"(?:^|\n)@@readme-block (\d+)@@\n", output)
    for number, text in zip(pieces[1::2], pieces[2::2], strict=True):
        found[int(number)] = text
    return found


# The checker itself, on snippets: a parser that found nothing would pass just as quietly.


def test_blocks_are_found_with_their_skip_reasons() -> None:
    text = (
        "intro\n```bash\necho one\n```\n\n"
        "<!-- readme-test: skip (needs Docker) -->\n```bash\ndocker run x\n```\n"
        "```python\nprint(1)\n```\n```\nplain\n```\n```json\n{}\n```\n"
    )
    assert shell_blocks(text) == [
        Block(line=2, code="echo one\n", skip_reason=None),
        Block(line=7, code="docker run x\n", skip_reason="needs Docker"),
        Block(line=10, code="print(1)\n", skip_reason=None, language="python"),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "```sh\necho hidden\n```\n",
        "```shell\necho hidden\n```\n",
        "<!-- readme-test: skip (reason) -->\n\n```bash\necho x\n```\n",
        "<!-- readme-test: skip () -->\n```bash\necho x\n```\n",
        "<!-- readme-test: skip (reason) -->\n```json\nx\n```\n",
        "```python\nprint('CREDITML_README_PYTHON')\n```\n",
        "<!-- readme-test: run -->\n```bash\necho x\n```\n",
        "```bash\necho never closed\n",
    ],
)
def test_blocks_that_could_dodge_the_test_are_refused(text: str) -> None:
    with pytest.raises(ReadmeFormatError):
        shell_blocks(text)


def test_the_session_reports_which_block_printed_what() -> None:
    blocks = [Block(1, "echo a\n", None), Block(5, "echo b\nfalse\necho c\n", None)]
    result = subprocess.run(
        ["bash", "-c", session_script(blocks)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode != 0
    assert split_output(result.stdout, 3) == ["a\n", "b\n", None]


def test_python_blocks_run_in_the_session_and_their_failures_stop_it() -> None:
    blocks = [
        Block(1, "export GREETING=hello\n", None),
        Block(3, "import os\nprint(os.environ['GREETING'], 'from python')\n", None, "python"),
        Block(7, "raise SystemExit(3)\n", None, "python"),
        Block(9, "echo never\n", None),
    ]
    result = subprocess.run(
        ["bash", "-c", session_script(blocks)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3
    assert split_output(result.stdout, 4) == ["", "hello from python\n", "", None]


# The README itself.


def test_every_readme_block_runs_or_says_why_not() -> None:
    blocks = shell_blocks(README.read_text(encoding="utf-8"))
    skipped = [block for block in blocks if block.skip_reason is not None]
    assert len(skipped) <= MAX_SKIPPED, [(block.line, block.skip_reason) for block in skipped]
    assert len(blocks) - len(skipped) >= len(EXPECTED_OUTPUT)
    run = [block for block in blocks if block.skip_reason is None]
    # One place says where the API is, so the test (and a reader on another port) can move it.
    api_lines = [line for block in run for line in block.code.splitlines() if "3000" in line]
    assert api_lines == ["API=${API:-http://127.0.0.1:3000}"]
    for piece in EXPECTED_OUTPUT:
        assert sum(piece in block.code for block in run) == 1, piece


@pytest.fixture
def readme_stack(tmp_path: Path) -> Iterator[RunningStack]:
    """A fresh stack of the README test's own, in a project copy of its own."""
    folder = tmp_path / "project"
    folder.mkdir()
    shutil.copy(ROOT / "template.yaml", folder / "template.yaml")
    shutil.copytree(ROOT / "functions", folder / "functions")
    # The README runs `.venv/bin/...` and reads `events/...` from the repository's root.
    for shared in (".venv", "events"):
        (folder / shared).symlink_to(ROOT / shared)
    running = start_stack(cwd=folder, extra_env={"CREDITML_ADMIN_EMAIL": README_ADMIN})
    yield running
    assert running.stop() == 0


def test_readme_commands_run_against_a_fresh_stack(readme_stack: RunningStack) -> None:
    run = [
        block
        for block in shell_blocks(README.read_text(encoding="utf-8"))
        if block.skip_reason is None
    ]
    folder = readme_stack.cwd
    environment = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(folder),
        "TMPDIR": str(folder),
        "LANG": "C.UTF-8",
        "API": readme_stack.url,
        # As a reader would: the password the stack printed, the email left to its default.
        "ADMIN_PASSWORD": readme_stack.demo_password(README_ADMIN),
    }
    result = subprocess.run(
        ["bash", "-c", session_script(run)],
        cwd=folder,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
    )
    outputs = split_output(result.stdout, len(run))
    reached = [number for number, output in enumerate(outputs) if output is not None]
    last = reached[-1] if reached else 0
    assert result.returncode == 0, (
        f"README block at line {run[last].line} failed (exit {result.returncode}):\n"
        f"{run[last].code}\n--- output ---\n{outputs[last]}"
    )
    for block, output in zip(run, outputs, strict=True):
        assert output is not None
        where = f"README block at line {block.line}"
        assert "errors.creditml.dev/" not in output, f"{where} got an API error:\n{output}"
        statuses = [int(code) for code in re.findall(r'"statusCode": (\d+)', output)]
        assert all(code < 400 for code in statuses), f"{where}:\n{output}"
        for piece, expected in EXPECTED_OUTPUT.items():
            if piece in block.code:
                for text in expected:
                    assert text.lower() in output.lower(), f"{where}: no {text!r} in\n{output}"


def _quiet(output: list[str], settle: float = 0.5, limit: float = 10) -> str:
    """The stack's output once it has stopped growing (its log lines arrive on a pipe)."""
    deadline = time.monotonic() + limit
    seen = -1
    while len(output) != seen and time.monotonic() < deadline:
        seen = len(output)
        time.sleep(settle)
    return "".join(output)


def test_a_concurrent_burst_leaves_no_pool_warnings(stack: RunningStack) -> None:
    # 40 predictions at once on 10 credits: every one reaches DynamoDB together (10 are
    # charged, 30 get 402). botocore's default pools hold 10 connections, and every one
    # over that was dropped with a "Connection pool is full" warning.
    with stack.client() as http:
        statuses = _burst(stack.url, http)
    assert sorted(statuses) == [200] * 10 + [402] * 30
    output = _quiet(stack.output)
    assert output.count(POOL_FULL) == 0, [line for line in output.splitlines() if POOL_FULL in line]


def _burst(url: str, http: httpx.Client) -> list[int]:
    """40 concurrent predictions by a new user holding 10 credits; their statuses."""
    email = f"burst-{uuid.uuid4().hex[:8]}@example.com"
    user = http.post("/auth/register", json={"email": email, "password": "burst password"})
    assert user.status_code == 201, user.text

    def login(email: str, password: str) -> dict[str, str]:
        answer = http.post("/auth/login", json={"email": email, "password": password})
        assert answer.status_code == 200, answer.text
        return {"authorization": f"Bearer {answer.json()['access_token']}"}

    admin, caller = login(ADMIN_EMAIL, ADMIN_PASSWORD), login(email, "burst password")
    grant = http.post(
        "/billing/top-ups",
        json={"amount": 10, "user_id": user.json()["id"]},
        headers={**admin, "Idempotency-Key": "burst-grant"},
    )
    assert grant.status_code == 201, grant.text
    models = http.get("/models", headers=caller).json()["items"]
    model_id = next(model["id"] for model in models if model["name"] == "iris-demo")
    barrier = Barrier(40)

    def predict(number: int) -> int:
        with httpx.Client(base_url=url, timeout=120) as client:
            barrier.wait()
            answer = client.post(
                f"/models/{model_id}/predictions",
                json={"inputs": [[5.1, 3.5, 1.4, 0.2]]},
                headers={**caller, "Idempotency-Key": f"burst-{number}"},
            )
            return answer.status_code

    with ThreadPoolExecutor(40) as pool:
        return list(pool.map(predict, range(40)))
