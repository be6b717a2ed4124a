"""`snakemake --lint` on the workflow: every finding is one of the accepted ones below.

Snakemake 9's lint exits 1 on any finding, so the test parses its report: each ``Lints for rule R``
/ ``Lints for snakefile F`` block lists findings as ``* <title>:``.  The findings fixed so far stay
fixed (``Mixed rules and functions in same snakefile``: the input functions of fetch.smk and shard.smk
live in common.smk), and any new kind of finding fails the test.

Accepted findings, and why:

* ``Specify a conda environment or container for each rule`` -- the harness runs in one pinned
  virtual environment (``requirements.lock``, ``scripts/install.sh``); every rule calls the same
  ``dpir`` command line, so per-rule conda envs would only duplicate that environment.
* ``Shell command directly uses variable DPIR / CFGARG from outside of the rule`` -- ``DPIR`` is the
  quoted interpreter (``<sys.executable> -m dpir``) and ``CFGARG`` the resolved-config path
  (common.smk).  Passing them through ``params:`` would put them into Snakemake's ``params`` rerun
  trigger: moving the checkout or the venv would rerun every job.  Reruns are driven instead by the
  per-rule ``params`` hashes of the config sections each rule reads.
"""
from __future__ import annotations

import re
import subprocess
import sys

from helpers import ROOT

ACCEPTED = {
    "Specify a conda environment or container for each rule.",
    "Shell command directly uses variable DPIR from outside of the rule",
    "Shell command directly uses variable CFGARG from outside of the rule",
}

HEADER = re.compile(r"^Lints for (rule|snakefile) (.+?):$")
FINDING = re.compile(r"^    \* (.+?):?$")


def parse(report: str) -> list[tuple[str, str]]:
    """(where, title) of every finding in a ``snakemake --lint`` text report."""
    found, where = [], None
    for line in report.splitlines():
        if m := HEADER.match(line):
            where = m.group(2)
        elif where and (m := FINDING.match(line)):
            found.append((where, m.group(1).rstrip(":")))
    return found


def test_parse_reads_the_report_format():
    text = ("Lints for rule a (line 1, x.smk):\n    * Specify a conda environment or container for each rule.:\n"
            "      This way, ...\n    * Shell command directly uses variable DPIR from outside of the rule:\n"
            "Lints for snakefile y.smk:\n    * Mixed rules and functions in same snakefile.:\n")
    assert parse(text) == [("a (line 1, x.smk)", "Specify a conda environment or container for each rule."),
                           ("a (line 1, x.smk)", "Shell command directly uses variable DPIR from outside of the rule"),
                           ("y.smk", "Mixed rules and functions in same snakefile.")]


def test_snakemake_lint_has_only_accepted_findings(tmp_path):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
           "--configfile", str(ROOT / "config" / "test.yaml"), "--lint"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    report = r.stdout + r.stderr
    findings = parse(report)
    if r.returncode == 0:
        assert not findings, report
        return
    assert r.returncode == 1 and findings, f"lint failed without findings (exit {r.returncode}):\n{report}"
    new = [f"{where}: {title}" for where, title in findings if title not in ACCEPTED]
    assert not new, "new snakemake --lint findings (fix them, or accept them in this file with a reason):\n" + \
        "\n".join(new)
