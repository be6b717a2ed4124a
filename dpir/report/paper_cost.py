"""Table 9 at paper size: the paper's cost claim checked on the counted TFLOPs of its own architectures.

The counts come from ``dpir plan --table9 FILE`` (:func:`dpir.tflops.paper_table9`: every network call
of a whole restore of one 1280x720 output, FlopCounterMode on the META device, from
``config/paper.yaml``'s architectures); this module only renders that JSON (the report never builds a
network).  The claim is the paper's "DP-IR needs about 2x to 100x fewer TFLOPs than the diffusion
competitors" (Table 9).  Per task, DP-IR is its cheapest counted DP-IR row (the sampler the paper
would quote for cost), and a *diffusion competitor* is any other method with more than one network
call per image (one-pass regression networks are shown for scale, without a verdict).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

#: the range of the paper's claim: DP-IR is between 2x and 100x cheaper
CLAIM_LOW, CLAIM_HIGH = 2.0, 100.0
CLAIM = "DP-IR needs 2x-100x fewer TFLOPs"
TITLE = ("Table 9 at paper size (counted on the meta device from config/paper.yaml's architectures, "
         "1280x720 output)")


def paper_cost_path(config: dict) -> Path:
    """Where the workflow writes the count (not ``<task>_tflops_*.json``: that is the `tflops` rule's)."""
    return Path(config["out"]) / "cost" / "paper_size_table9_1280x720.json"


def reference(rows: list[dict], task: str) -> dict | None:
    """DP-IR of ``task``: its cheapest counted DP-IR row."""
    dp = [r for r in rows if r["task"] == task and r["kind"] == "dpir"]
    return min(dp, key=lambda r: r["tflops"]) if dp else None


def competitors(rows: list[dict], task: str) -> list[dict]:
    return [r for r in rows if r["task"] == task and r["kind"] != "dpir" and r["nfe"] > 1]


def verdict(ratio: float) -> str:
    """The claim against one measured ratio (competitor TFLOPs / DP-IR TFLOPs)."""
    if CLAIM_LOW <= ratio <= CLAIM_HIGH:
        return f"agrees (measured: DP-IR needs {_num(ratio)}x fewer TFLOPs)"
    if ratio > CLAIM_HIGH:
        return f"agrees in direction, beyond the range (measured: DP-IR needs {_num(ratio)}x fewer TFLOPs, over 100x)"
    if ratio >= 1:
        return f"disagrees (measured: DP-IR needs only {_num(ratio)}x fewer TFLOPs, under the claimed 2x)"
    return f"disagrees (measured: DP-IR needs {_num(1 / ratio)}x more TFLOPs)"


def _num(v: float) -> str:
    """3 significant digits, without an exponent for the large values (3,940 rather than 3.94e+03)."""
    from dpir.report.tables import plain_number

    return plain_number(v)


def _indi_note(row: dict, ref: dict) -> str:
    """At which InDI size (TFLOP per NFE, or number of steps at this size) the verdict would flip."""
    n = row["nfe"]
    low, high = CLAIM_LOW * ref["tflops"] / n, CLAIM_HIGH * ref["tflops"] / n
    steps = math.ceil(CLAIM_LOW * ref["tflops"] / row["tflops_per_nfe"])
    state = "agrees" if low <= row["tflops_per_nfe"] <= high else "disagrees"
    return (f"InDI ({row['task']}): the InDI paper (Delbracio & Milanfar, TMLR 2023) does not publish a parameter "
            f"count or network size that we could verify here, so this row uses our own "
            f"{row['params'] / 1e6:.3g}M-parameter U-Net (config/paper.yaml marks its architecture UNKNOWN), "
            f"{row['tflops_per_nfe']:.3g} TFLOP per NFE x {n} NFE.  The verdict ({state}) would read \"agrees\" "
            f"for an InDI network of {_num(low)} to {_num(high)} TFLOP per NFE at N = {n} (2x to 100x DP-IR's "
            f"{ref['tflops']:.3g} TFLOP), or with N >= {steps} steps of this network.")


def table9_section(data: dict | None, source: str = "") -> list[str]:
    """The report's section (markdown lines); ``data`` None (no count file) renders n/a with the fix."""
    lines = [f"## {TITLE}", ""]
    if data is None:
        return lines + ["n/a [1]", "", f"[1] No count file{' ' + source if source else ''}: run "
                        "`dpir plan --config config/paper.yaml --table9 FILE` (the workflow's `paper_table9` rule "
                        "writes it).", ""]
    lines += ["| Task | Method | NFE | Params (M) | TFLOPs/img | TFLOPs/NFE | vs DP-IR (competitor / DP-IR) |",
              "|---|---|---|---|---|---|---|"]
    verdicts, notes = [], []
    for task in dict.fromkeys(r["task"] for r in data["rows"]):
        ref = reference(data["rows"], task)
        comp = {id(r) for r in competitors(data["rows"], task)}
        for r in (r for r in data["rows"] if r["task"] == task):
            ratio = "DP-IR reference" if r is ref else (f"{_num(r['tflops'] / ref['tflops'])}x" if ref else "n/a")
            flag = "" if r["flops_counted"] else " (not counted)"
            mark = ""
            if ref is not None and id(r) in comp:
                verdicts.append(f"- {task}, {r['label']} vs {ref['label']}: {verdict(r['tflops'] / ref['tflops'])}")
                if r["kind"] == "indi":
                    notes.append(_indi_note(r, ref))
                    mark = f" [{len(notes)}]"
            lines.append(f"| {task} | {r['label']}{mark} | {r['nfe']} | {r['params'] / 1e6:.3g} | {r['tflops']:.4g}"
                         f"{flag} | {r['tflops_per_nfe']:.3g} | {ratio} |")
    lines += ["", f"Does our count agree with the paper's claim \"{CLAIM}\" than the diffusion competitors?", "",
              *(verdicts or ["- n/a: no DP-IR row and diffusion competitor in the same task"]), ""]
    lines += [f"Counted by `dpir plan --table9` in {data.get('count_seconds', 'n/a')} s: every network call of one "
              f"whole restore of a {data['width']}x{data['height']} output, FlopCounterMode on the META device "
              "(2 x MACs of conv/matmul/attention; FFTs and elementwise ops not counted; no weights or data), "
              "from the architectures of " + (", ".join(data.get("config_sources") or []) or "config/paper.yaml")
              + ".  DP-IR per task: its cheapest configured row; a diffusion competitor: any other method with "
              "more than one network call per image (one-pass networks are shown for scale)."]
    lines += ["", *(f"[{i}] {n}" for i, n in enumerate(notes, 1))] if notes else []
    skipped = data.get("not_counted") or []
    if skipped:             # checkpoint rows whose file is not on this machine (the count never downloads)
        lines += ["", "Not counted: " + "; ".join(f"{r['task']}, {r['label']} ({r['why']})" for r in skipped) + "."]
    return lines + [""]


def read_table9(path: Path) -> dict | None:
    """The count file, None when there is none; a file that is not one is a one-line error."""
    from dpir.errors import DpirError

    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DpirError(f"{path} is not a JSON file ({e}); delete it and run `dpir plan --config config/paper.yaml "
                        f"--table9 {path}` again") from None
    if not (isinstance(data, dict) and data.get("format") == "dpir-paper-table9/1"
            and isinstance(data.get("rows"), list)):
        raise DpirError(f"{path} is not a `dpir plan --table9` count (format dpir-paper-table9/1); run "
                        f"`dpir plan --config config/paper.yaml --table9 {path}` again")
    return data
