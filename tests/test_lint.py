"""The code base stays `ruff check` clean."""
from __future__ import annotations

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
