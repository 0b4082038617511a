"""The code before a change, checked out beside this one, so a benchmark can serve both.

`source_of(rev)` makes (once) a detached git worktree of `rev` in the temp
folder (outside this tree, so linters never see it) and returns its folder;
`Server(..., source=folder)` then runs that tree's `iotsupport serve` with this
venv's packages. Both servers get the same database, so the figures compare
code, not data.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def source_of(rev: str) -> Path:
    """A checkout of `rev` (a commit, branch or tag), made on first use and kept."""
    commit = subprocess.run(
        ["git", "rev-parse", "--verify", f"{rev}^{{commit}}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    folder = Path(tempfile.gettempdir()) / f"iotsupport-baseline-{commit[:12]}"
    if not (folder / "src" / "iotsupport").is_dir():
        folder.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["git", "worktree", "add", "--force", "--detach", str(folder), commit],
            cwd=REPO,
            capture_output=True,
            check=True,
        )
    return folder
