"""Run a subprocess in which ``import torch`` fails, and say who tried.

The Snakefile's parse path and ``validate_config`` must not import torch (torch-free registries and key
declarations, ``dpir.registry``).  :func:`run_without_torch` puts a stub ``torch`` package first on
``PYTHONPATH`` whose import raises an ImportError listing the repository frames that imported it; a
command that still succeeds proves torch was never needed.  (Import tests use ``tests/`` on sys.path.)
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from helpers import ROOT

MARK = "TORCH-BLOCKED-BY-TEST"

STUB = f'''
import traceback
_root = {str(ROOT)!r} + "/"
_chain = [f"{{f.filename[len(_root):]}}:{{f.lineno}}" for f in traceback.extract_stack()[:-1]
          if f.filename.startswith(_root) and "/.venv/" not in f.filename]
raise ImportError({MARK[:5]!r} + {MARK[5:]!r} + " torch imported via: " + " -> ".join(_chain))
'''
# (the mark is split in the stub's source: a traceback that quotes the source line must not match)

#: modules of other issues that may still import torch on the parse path (issue 12: dpir.tasks and
#: dpir.metrics are being made torch-free separately); a block only there is reported as pending
PENDING = ("dpir/tasks.py", "dpir/metrics/__init__.py")


def run_without_torch(args: list[str], tmp_path: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    stub = tmp_path / "no_torch"
    (stub / "torch").mkdir(parents=True, exist_ok=True)
    (stub / "torch" / "__init__.py").write_text(STUB)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(stub), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def torch_chain(output: str) -> str | None:
    """The import chain of a blocked ``import torch`` in a subprocess's output, or None."""
    m = re.search(MARK + r" torch imported via: (.*)", output)
    return m.group(1).strip() if m else None


def pending_only(chain: str) -> str | None:
    """The frame of a pending module (:data:`PENDING`) on the chain that imported torch, or None."""
    for frame in chain.split(" -> "):
        if frame.split(":")[0] in PENDING:
            return frame
    return None
