"""Any per-image pyiqa metric by name: ``pyiqa:<name>`` in a task's ``metrics`` list.

The score is pyiqa's metric with pyiqa's default options (``pyiqa.create_metric(name)``), on RGB in
[0, 1] (float32) after the harness's border crop; full-reference metrics get the target, no-reference
ones (pyiqa's ``metric_mode`` "NR") are called on the output alone.  Direction and FR/NR come from
pyiqa's own table (:mod:`dpir.metrics.pyiqa_catalog`), so they are pyiqa's, not ours.

Metrics never download (see :mod:`dpir.metrics.weights`).  pyiqa fetches what a metric needs while
building it, from many places (its own files on the Hugging Face hub through
``pyiqa.utils.download_util.load_file_from_url`` into ``$TORCH_HOME/hub/pyiqa``, torchvision
backbones into ``$TORCH_HOME/hub/checkpoints``, timm/CLIP/transformers models), so no table of ours
could list them all.  Instead the metric is built once with every download path shut
(:func:`_no_downloads`): torch.hub's and pyiqa's ``download_url_to_file`` and any socket connection
raise instead.  A metric whose files are all cached builds as usual; one that would download is
unavailable, and the reason names the file pyiqa asked for and where it must go (the first missing
one: pyiqa asks for the next only once that one is there).  pyiqa's cache directory is set to
``torch.hub.get_dir()/pyiqa`` at build time, the place :data:`dpir.metrics.weights.WEIGHTS` looks,
so ``TORCH_HOME`` moves both.  Cached files are read by pyiqa as it reads them (``torch.load`` of
its own checkpoints); only trust a cache you filled yourself.
"""
from __future__ import annotations

import contextlib
import io
import os
import socket
from pathlib import Path

import torch

from dpir.errors import DpirError, MetricUnavailable
from dpir.metrics.base import Metric
from dpir.metrics.pyiqa_catalog import PREFIX, lookup, unknown
from dpir.metrics.weights import WEIGHTS, fetch_command, first_line, require_package

#: import name -> pip name, where they differ, for the modules pyiqa's metrics import on demand
_PIP = {"pkg_resources": "setuptools", "cv2": "opencv-python", "PIL": "pillow", "sklearn": "scikit-learn",
        "yaml": "pyyaml"}


class _Blocked(Exception):
    """Raised inside pyiqa instead of a download (not an OSError, so urllib and requests pass it on)."""

    def __init__(self, what: str, url: str | None = None, dst: str | None = None):
        super().__init__(what)
        self.what, self.url, self.dst = what, url, dst


@contextlib.contextmanager
def _no_downloads(attempts: list[_Blocked]):
    """Shut every way pyiqa has to fetch a file while it builds a metric; record what it tried."""
    import pyiqa.utils.download_util as du

    def refuse_file(url, dst, *args, **kwargs):
        attempts.append(_Blocked(f"download {url}", url=str(url), dst=str(dst)))
        raise attempts[-1]

    def refuse_connect(sock, address, *args, **kwargs):
        attempts.append(_Blocked(f"connect to {address}"))
        raise attempts[-1]

    def refuse_lookup(host, *args, **kwargs):
        attempts.append(_Blocked(f"look up {host}"))
        raise attempts[-1]

    shut = {(torch.hub, "download_url_to_file"): refuse_file, (du, "download_url_to_file"): refuse_file,
            # pyiqa fixed its cache directory when it was imported; follow TORCH_HOME as WEIGHTS does
            (du, "DEFAULT_CACHE_DIR"): os.path.join(torch.hub.get_dir(), "pyiqa"),
            (socket.socket, "connect"): refuse_connect, (socket.socket, "connect_ex"): refuse_connect,
            (socket, "getaddrinfo"): refuse_lookup}
    try:
        # the hub (timm, CLIP and transformers models) then serves cached files and raises for others
        # at once, instead of retrying a refused connection for a minute
        import huggingface_hub.constants as hf

        shut[(hf, "HF_HUB_OFFLINE")] = True
    except ImportError:
        pass
    saved = list(shut)
    old = [getattr(obj, attr) for obj, attr in saved]
    for (obj, attr), value in shut.items():
        setattr(obj, attr, value)
    try:
        # pyiqa prints "Downloading ..." / "Loading pretrained model ..."; only dpir.cli prints
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for (obj, attr), value in zip(saved, old):
            setattr(obj, attr, value)


def _offline_hub_error(e: BaseException) -> bool:
    """A Hugging Face hub file that is not cached (raised by the hub in offline mode)."""
    while e is not None:
        if type(e).__name__ in ("LocalEntryNotFoundError", "OfflineModeIsEnabled"):
            return True
        e = e.__cause__ or e.__context__
    return False


def _hub_file(e: BaseException) -> str | None:
    """``repo/filename`` of the hub file that was asked for, read from the failed ``hf_hub_download`` call."""
    tb = e.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "hf_hub_download":
            repo, filename = frame.f_locals.get("repo_id"), frame.f_locals.get("filename")
            if repo and filename:
                return f"{repo}/{filename}"
        tb = tb.tb_next
    return None


def _fix_for(dst: str, url: str) -> str:
    """``dpir fetch <name>`` when the file is one of ours (the same path), else a download to the very path."""
    for name, w in WEIGHTS.items():
        if Path(dst) == w.path():
            return fetch_command(name)
    return f"curl -L --create-dirs -o {dst} {url}"


def pyiqa_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pyiqa")
    except PackageNotFoundError:
        return "?"


class PyiqaMetric(Metric):
    """pyiqa's metric ``pyiqa_name`` with its defaults; built (and checked offline) on first use."""

    def __init__(self, name: str, crop_border: int = 0):
        info = lookup(name)
        if info is None:
            raise DpirError(unknown(name))
        self.name = name
        self.pyiqa_name = info.name
        self.mode = info.mode
        self.needs_reference = info.mode != "NR"
        # which metrics read files is known only to pyiqa's code; check_available() finds out offline
        self.needs_weights = False
        super().__init__(crop_border)
        self._model = None
        self._unavailable: MetricUnavailable | None = None

    def _describe(self) -> str:
        ref = "full-reference" if self.needs_reference else "no-reference (the target is not used)"
        return (f"pyiqa {pyiqa_version()} '{self.pyiqa_name}' with pyiqa's default options, {ref}, "
                f"input RGB in [0, 1] float32")

    def check_available(self) -> None:
        """Build pyiqa's metric with downloads shut; MetricUnavailable names what it would fetch."""
        self._build()

    def _build(self):
        if self._model is not None:
            return self._model
        if self._unavailable is not None:
            raise self._unavailable
        require_package(self.name, "pyiqa")
        import pyiqa

        attempts: list[_Blocked] = []
        try:
            with _no_downloads(attempts):
                model = pyiqa.create_metric(self.pyiqa_name, as_loss=False, device=torch.device("cpu"))
        except ModuleNotFoundError as e:
            if attempts:
                raise self._missing(attempts[0]) from None
            module = (e.name or "?").split(".")[0]
            self._unavailable = MetricUnavailable(
                self.name, f"pyiqa's {self.pyiqa_name!r} needs the Python module {module!r}, which is not installed.",
                f"pip install {_PIP.get(module, module)}")
            raise self._unavailable from None
        except Exception as e:  # noqa: BLE001 -- pyiqa's many loaders raise many types
            if attempts or _offline_hub_error(e):
                raise self._missing(attempts[0] if attempts else None, e) from None
            raise DpirError(f"metric {self.name!r}: pyiqa {pyiqa_version()} could not build {self.pyiqa_name!r} "
                            f"({type(e).__name__}: {first_line(e)}); use another metric") from None
        if attempts:   # a loader that swallowed our refusal and went on without its file
            raise self._missing(attempts[0])
        if bool(model.lower_better) != bool(self.lower_better) and self.lower_better is not None:
            raise RuntimeError(f"{self.name}: pyiqa's lower_better ({model.lower_better}) differs from its config table")
        self._model = model.eval().requires_grad_(False)
        return self._model

    def _missing(self, attempt: _Blocked | None, error: BaseException | None = None) -> MetricUnavailable:
        how = f"python -c \"import pyiqa; pyiqa.create_metric('{self.pyiqa_name}', device='cpu')\""
        if attempt is not None and attempt.dst is not None:
            reason = (f"pyiqa {pyiqa_version()} '{self.pyiqa_name}' reads the file {attempt.dst} (from {attempt.url}), "
                      f"which is not cached, and metrics never download (once it is there, pyiqa may ask for more: "
                      f"`{how}` on a machine with internet fills the cache, $TORCH_HOME/hub).")
            fix = _fix_for(attempt.dst, attempt.url)
        else:
            hub = _hub_file(error) if error is not None else None
            what = (f"the Hugging Face hub file {hub}" if hub else
                    attempt.what if attempt is not None else first_line(error))
            reason = (f"pyiqa {pyiqa_version()} '{self.pyiqa_name}' needs a file that is not cached ({what}), and "
                      f"metrics never download; run the fix on a machine with internet and copy $TORCH_HOME/hub "
                      f"and ~/.cache/huggingface here.")
            fix = how
        self._unavailable = MetricUnavailable(self.name, reason, fix)
        return self._unavailable

    def _score(self, out, ref):
        model = self._build().to(out.device)
        try:
            s = model(out.float(), ref.float()) if self.needs_reference else model(out.float())
        except Exception as e:  # noqa: BLE001 -- e.g. an image too small for the metric's windows
            raise DpirError(f"metric {self.name!r}: pyiqa's {self.pyiqa_name!r} failed on {out.shape[-2]}x{out.shape[-1]} "
                            f"images after the border crop ({type(e).__name__}: {first_line(e)}); use larger images, "
                            f"a smaller crop_border or another metric") from None
        if isinstance(s, (tuple, list)):
            s = s[0]
        return torch.as_tensor(s).reshape(out.shape[0])


def pyiqa_metric(name: str, crop_border: int = 0) -> Metric:
    """The metric ``pyiqa:<name>`` (``name`` with its prefix)."""
    if not name.startswith(PREFIX):
        raise ValueError(f"{name!r} is not a pyiqa metric name ({PREFIX}<name>)")
    return PyiqaMetric(name, crop_border)
