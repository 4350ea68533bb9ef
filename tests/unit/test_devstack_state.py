"""The local stack's state file has one owner: a second stack in the same folder is refused
before it starts, and the claim ends with its process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from creditml.devstack.stack import StackAlreadyRunning, StateClaim, state_path

pytestmark = pytest.mark.unit


def _publish(root: Path) -> None:
    state_path(root).write_text(
        json.dumps(
            {
                "api_url": "http://127.0.0.1:3000",
                "aws_endpoint": "http://127.0.0.1:5000",
                "environment": {},
                "demo_user_email": "demo@creditml.local",
                "admin_email": "admin@creditml.local",
                "pid": os.getpid(),
            }
        )
    )


def test_a_second_claim_on_the_folder_is_refused_naming_the_running_stack(
    tmp_path: Path,
) -> None:
    first = StateClaim(tmp_path)
    _publish(tmp_path)
    with pytest.raises(StackAlreadyRunning, match=rf"pid {os.getpid()}, API http://127.0.0.1:3000"):
        StateClaim(tmp_path)
    first.release()
    StateClaim(tmp_path).release()  # free again once the first let go


def test_the_claim_ends_with_its_process_however_it_ends(tmp_path: Path) -> None:
    """A stack killed with SIGKILL leaves its state file behind, but not its claim."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; "
            "from creditml.devstack.stack import StateClaim; "
            "claim = StateClaim(Path(sys.argv[1])); print('held', flush=True); time.sleep(60)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StackAlreadyRunning):
            StateClaim(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    StateClaim(tmp_path).release()
