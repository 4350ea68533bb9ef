"""Every repository path the docs mention is tracked by git, and every test folder is
collected by a plain `pytest`.

`tests/build` was described in the README, docs/DECISIONS.md and layers/Makefile while
`.gitignore`'s `build/` kept it out of every commit (and pytest's default `norecursedirs`
would have skipped it anyway), so CI never ran it. A working tree cannot tell: an ignored
file is still there to read. Only `git ls-files` can, so that is what the docs are checked
against: a path counts once it is committed (or at least staged)."""

from __future__ import annotations

import fnmatch
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest

from tests.conftest import ROOT

# The roots of the repository the docs talk about. `creditml/...` is how the docs name
# modules of the shared layer, so it resolves inside layers/common/.
_ROOTS = ("tests", "benchmarks", "scripts", "layers", "functions", "docs", "events", "creditml")
_ALIASES = {"creditml/": "layers/common/creditml/"}
_MENTION = re.compile(
    # Not inside a longer path or a URL (`.venv/bin/creditml`, `https://x/docs/...`).
    r"(?<![\w./-])"
    rf"((?:{'|'.join(_ROOTS)})/[\w.*<>/-]*|\.ci/run\b)"
)
# Metavariables the docs write in capitals (`events/FILE.json`). An explicit list, because
# a rule like "any capitalised name" would also excuse a missing `docs/DESIGN.md`.
_METAVARIABLES = frozenset({"FILE", "NAME", "FUNCTION"})
# Paths the docs name as outputs of a command: ignored by git on purpose.
GENERATED = {"benchmarks/results.json": "written by `make bench`"}


def documents(root: Path) -> list[Path]:
    """The docs a reader follows: the README, docs/, and every folder README."""
    candidates = [
        root / "README.md",
        root / "CHANGELOG.md",
        root / "events" / "README.md",
        *sorted((root / "docs").glob("*.md")),
        *sorted((root / "layers").glob("**/README.md")),
    ]
    return [path for path in candidates if path.is_file()]


def mentioned_paths(text: str) -> set[str]:
    """The repository paths a text mentions, as written (templates and globs kept)."""
    found = set()
    for match in _MENTION.finditer(text):
        path = match.group(1).rstrip(".,:;").rstrip("/")
        if "/" in path or path == ".ci/run":
            found.add(path)
    return found


def _pattern(path: str) -> re.Pattern[str]:
    for alias, target in _ALIASES.items():
        if path.startswith(alias):
            path = target + path.removeprefix(alias)
    parts = []
    for piece in re.split(r"(<[^<>/]*>|\*\*|\*)", path):
        if piece == "**":
            parts.append(".*")
        elif piece == "*":
            parts.append("[^/]*")
        elif piece.startswith("<") and piece.endswith(">"):
            parts.append("[^/]+")
        else:
            parts.append(
                "/".join(
                    "[^/.]+" + re.escape(segment[len(stem) :])
                    if (stem := segment.split(".")[0]) in _METAVARIABLES
                    else re.escape(segment)
                    for segment in piece.split("/")
                )
            )
    return re.compile("".join(parts))


def tracked_paths(files: Iterable[str]) -> set[str]:
    """Tracked files and every folder that holds one."""
    paths: set[str] = set()
    for file in files:
        parts = file.split("/")
        paths.update("/".join(parts[:end]) for end in range(1, len(parts) + 1))
    return paths


def missing(mentioned: Iterable[str], tracked: set[str]) -> list[str]:
    """The mentioned paths (or templates, or globs) that no tracked path satisfies."""
    return sorted(
        path
        for path in mentioned
        if not any(_pattern(path).fullmatch(candidate) for candidate in tracked)
    )


def git_tracked_files(root: Path) -> list[str]:
    try:
        result = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except FileNotFoundError:
        pytest.fail("git is not installed: documented paths are checked against `git ls-files`")
    if result.returncode != 0:
        pytest.fail(
            f"`git ls-files` failed in {root} (not a git checkout?): {result.stderr.strip()}"
        )
    return [name for name in result.stdout.split("\0") if name]


def test_every_documented_path_is_tracked_by_git() -> None:
    tracked = tracked_paths(git_tracked_files(ROOT))
    problems = {}
    for document in documents(ROOT):
        mentioned = mentioned_paths(document.read_text(encoding="utf-8")) - set(GENERATED)
        absent = missing(mentioned, tracked)
        if absent:
            problems[str(document.relative_to(ROOT))] = absent
    assert not problems, (
        f"the docs name paths git does not track (untracked, ignored or gone): {problems}"
    )


def test_generated_paths_are_documented_and_ignored() -> None:
    # The exemption must not outlive its reason: each entry is still in the docs, and git
    # still ignores it (were it committed, it would need no exemption).
    text = "\n".join(path.read_text(encoding="utf-8") for path in documents(ROOT))
    for path in GENERATED:
        assert path in mentioned_paths(text), f"{path} is no longer documented"
        ignored = subprocess.run(
            ["git", "-C", str(ROOT), "check-ignore", "-q", "--no-index", path],
            timeout=60,
        )
        assert ignored.returncode == 0, f"{path} is exempted but not ignored by git"


def broken_relative_links(document: Path, text: str, root: Path, tracked: set[str]) -> list[str]:
    """The `../x` paths in a document that leave the repository or reach nothing tracked."""
    broken = set()
    for link in re.findall(r"(?<![\w.])(?:\.\./)+[\w./-]*\w", text):
        target = (document.parent / link).resolve()
        if not target.is_relative_to(root) or str(target.relative_to(root)) not in tracked:
            broken.add(link)
    return sorted(broken)


def test_relative_links_stay_inside_the_repository() -> None:
    # A fresh clone (CI, a reader on GitHub) has nothing beside the repository.
    tracked = tracked_paths(git_tracked_files(ROOT))
    problems = {}
    for document in documents(ROOT):
        text = document.read_text(encoding="utf-8")
        if broken := broken_relative_links(document, text, ROOT, tracked):
            problems[str(document.relative_to(ROOT))] = broken
    assert not problems, f"the docs point outside the repository or at nothing: {problems}"


def uncollected(test_files: Iterable[str], testpaths: list[str], skipped: list[str]) -> list[str]:
    """The test files a plain `pytest` would not reach: outside `testpaths`, or below a
    folder that a `norecursedirs` pattern excludes (pytest matches them against names)."""
    return sorted(
        file
        for file in test_files
        if not any(file.startswith(f"{root.rstrip('/')}/") for root in testpaths)
        or any(
            fnmatch.fnmatch(part, pattern) for part in file.split("/")[:-1] for pattern in skipped
        )
    )


def test_plain_pytest_collects_every_test_folder(pytestconfig: pytest.Config) -> None:
    # The other half of the tests/build story: pytest's default `norecursedirs` has "build".
    files = [path.relative_to(ROOT).as_posix() for path in (ROOT / "tests").rglob("test_*.py")]
    assert (
        uncollected(files, pytestconfig.getini("testpaths"), pytestconfig.getini("norecursedirs"))
        == []
    )


# The scanner itself, on snippets: a check that found nothing would pass just as quietly.
TRACKED = tracked_paths(
    [
        "README.md",
        "docs/DECISIONS.md",
        "events/auth_login.json",
        "events/README.md",
        "functions/auth/app.py",
        "layers/common/creditml/models/loader.py",
        "tests/unit/test_tokens.py",
        ".ci/run",
    ]
)


def test_scanner_reports_a_documented_folder_git_does_not_track() -> None:
    # The original bug: the README's table names tests/build, which was never committed.
    snippet = "| `tests/build` | after `sam build` |\n| `tests/unit` | pure |"
    assert missing(mentioned_paths(snippet), TRACKED) == ["tests/build"]


def test_scanner_finds_paths_in_prose_links_and_code() -> None:
    snippet = (
        "See [docs/DECISIONS.md](docs/DECISIONS.md), (tests/unit/test_tokens.py). "
        "CI runs `.ci/run`; `tests/conftest.py: load_event`; end of sentence tests/unit.\n"
        "```bash\ncreditml invoke auth -e events/auth_login.json\n```"
    )
    assert mentioned_paths(snippet) == {
        "docs/DECISIONS.md",
        "tests/unit/test_tokens.py",
        ".ci/run",
        "tests/conftest.py",
        "tests/unit",
        "events/auth_login.json",
    }
    assert missing(mentioned_paths(snippet), TRACKED) == ["tests/conftest.py"]


def test_scanner_ignores_urls_and_paths_inside_other_paths() -> None:
    snippet = "https://example.com/docs/guide.md, .venv/bin/creditml, `../shared/DESIGN.md`"
    assert mentioned_paths(snippet) == set()


def test_relative_links_must_land_on_tracked_paths_inside() -> None:
    root = Path("/repo")
    snippet = "[README](../README.md), `../shared/DESIGN.md`, [gone](../docs/GONE.md)"
    broken = broken_relative_links(root / "docs" / "x.md", snippet, root, TRACKED)
    assert broken == ["../docs/GONE.md", "../shared/DESIGN.md"]


@pytest.mark.parametrize(
    ("path", "present"),
    [
        ("functions/<name>/app.py", True),
        ("functions/<name>/handler.py", False),
        ("events/*.json", True),
        ("events/*.yaml", False),
        ("events/FILE.json", True),
        ("docs/DESIGN.md", False),  # capitals are a metavariable only when listed as one
        ("creditml/models/loader.py", True),
        ("creditml/models/registry.py", False),
        ("layers/common", True),  # a folder holding tracked files
        ("tests/unit/test_tokens", False),  # a prefix of a file name is not a path
        ("tests/**/test_tokens.py", True),
    ],
)
def test_scanner_resolves_templates_globs_and_aliases(path: str, present: bool) -> None:
    assert (missing([path], TRACKED) == []) is present


def test_collection_check_sees_a_folder_pytest_would_skip() -> None:
    files = ["tests/build/test_size.py", "tests/unit/test_tokens.py", "scripts/test_x.py"]
    defaults = ["*.egg", ".*", "_darcs", "build", "CVS", "dist", "node_modules", "venv"]
    assert uncollected(files, ["tests"], defaults) == [
        "scripts/test_x.py",
        "tests/build/test_size.py",
    ]


def test_missing_git_checkout_fails_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stop git's search for a repository above the empty folder.
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    with pytest.raises(pytest.fail.Exception, match="not a git checkout"):
        git_tracked_files(tmp_path)
