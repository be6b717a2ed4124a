import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    """Small tensors run faster on one thread, and the 2-core CI machine is shared by the workflow
    subprocesses of the end-to-end tests.  Reset around every test: some stages set their own count."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def staged(tmp_path, monkeypatch):
    """Empty fetch roots and lock file under tmp_path (nothing may touch the repo's or the user's)."""
    monkeypatch.setenv("DPIR_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("DPIR_DATA", str(tmp_path / "downloads"))
    monkeypatch.setenv("DPIR_REGISTRY_LOCK", str(tmp_path / "registry.lock.json"))
    return tmp_path


#: test files that run for minutes, started first: with pytest-xdist (`.ci/run`: --dist loadfile) a long
#: file collected last runs alone at the end of the suite; started first, it overlaps with the rest
SLOW_FIRST = ("workflow/test_rehearsal.py", "workflow/test_dvc.py")


def pytest_collection_modifyitems(config, items):
    def rank(item):
        path = str(item.path).replace("\\", "/")
        return next((i for i, name in enumerate(SLOW_FIRST) if path.endswith(name)), len(SLOW_FIRST))
    items.sort(key=rank)            # stable: the order within each group is unchanged
