"""The code base stays `ruff check` and `mypy` clean."""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class LintTests(SynchronousTestCase):
    def test_ruff_clean(self) -> None:
        ruff = shutil.which("ruff", path=os.path.dirname(sys.executable)) or shutil.which("ruff")
        if ruff is None:
            self.skipTest("ruff is not installed (pip install -e '.[test]')")
        result = subprocess.run([ruff, "check", ROOT], capture_output=True, text=True,
                                timeout=120)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_mypy_clean(self) -> None:
        """mypy with pyproject.toml's [tool.mypy] (its files, mypy-zope) reports nothing."""
        if importlib.util.find_spec("mypy") is None:
            self.skipTest("mypy is not installed (pip install -e '.[test]')")
        result = subprocess.run(
            [sys.executable, "-m", "mypy", "--config-file", os.path.join(ROOT, "pyproject.toml")],
            capture_output=True, text=True, timeout=600, cwd=ROOT)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
