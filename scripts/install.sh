#!/usr/bin/env bash
# Create .venv with every dependency at the versions pinned in requirements.lock, and the package
# itself (editable).  Re-running it is cheap: pip skips what is already installed at the pinned
# version, and a change of pins is picked up because pip re-resolves against the lock file.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "dpir-bench needs Python >= 3.11 (Snakemake 9)")'
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q -c requirements.lock -e ".[test]"
.venv/bin/python -c "import dpir, torch, torchvision, spandrel, pyiqa, lpips, snakemake, dvc; print('dpir-bench environment ready: torch', torch.__version__)"
