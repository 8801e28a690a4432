"""Another commit's code, for a benchmark that runs it side by side with this tree.

    with baseline_code("b5efb5c") as tree:   # db/, sweep/ and models/ as of that commit
        ... PYTHONPATH=tree ...              # goes first on the path: its packages, not this tree's
"""
from __future__ import annotations

import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def baseline_code(commit: str) -> Iterator[Path]:
    """A temporary folder holding db/, sweep/ and models/ as of `commit` (`git archive`), removed after."""
    with tempfile.TemporaryDirectory(prefix=f"sweep-{commit}-") as folder:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "db", "sweep", "models"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
        yield Path(folder)
