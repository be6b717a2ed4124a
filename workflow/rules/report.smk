# Table 9 at paper size reads the paper's architectures from the repository's config/paper.yaml, whatever
# the workflow's own config (the report checks the paper's cost claim at its own scale on any machine).
from dpir.report.paper_cost import paper_cost_path

PAPER_CONFIG = str(Path(workflow.basedir) / "config" / "paper.yaml")


rule tflops:
    input:
        nets=tflops_nets,
    output:
        P.tflops_pattern(CFG),
    params:
        h=lambda w: config_hash([CFG["tasks"][w.task]["methods"], CFG["tasks"][w.task].get("scale")]),
    threads: THREADS
    log:
        P.job_log_pattern(CFG, "tflops", "{task}"),
    benchmark:
        P.benchmark_pattern(CFG, "tflops", "{task}"),
    shell:
        "{DPIR} tflops -q {CFGARG} --task {wildcards.task:q} > {log:q} 2>&1"


rule paper_table9:
    """Table 9 at the paper's architectures (config/paper.yaml), counted on META: no weights, no data, ~40 s."""
    input:
        paper=PAPER_CONFIG,
    output:
        str(paper_cost_path(CFG)),
    log:
        str(P.logs(CFG) / "paper_table9.log"),
    benchmark:
        str(P.benchmark_pattern(CFG, "paper_table9", "all")),
    shell:
        "{DPIR} plan --config {input.paper:q} --table9 {output:q} > {log:q} 2>&1"


rule report:
    input:
        scores=score_files(F.runs(CFG)),
        manifests=sorted({manifest_file(t, d) for t, d, _, _ in F.runs(CFG)}),
        tflops=[str(P.tflops(CFG, t)) for t in enabled_tasks(CFG) if CFG["tasks"][t]["kind"] != "burst"],
        paper_table9=str(paper_cost_path(CFG)),
        ablations=ablation_inputs(),
        protocols=str(P.protocols(CFG)),
        gaussian=[str(P.gaussian_dir(CFG) / "gaussian.json")] if CFG.get("gaussian") else [],
    output:
        report=REPORT,
        tables=directory(str(P.tables_dir(CFG))),
    params:
        h=config_hash([CFG.get("report"), CFG.get("description"), CFG.get("enabled_tasks"),
                       CFG.get("ablations") if CFG.get("run_ablations") else None]),
    log:
        str(P.logs(CFG) / "report.log"),
    shell:
        "{DPIR} report -q {CFGARG} > {log:q} 2>&1"


rule ablations:
    """The paper's ablation tables alone: `snakemake --cores all ablations` (also part of `all` via the report)."""
    input:
        ablation_inputs(),
    output:
        str(P.ablations(CFG)),
        str(P.claims(CFG)),          # the verdicts, structured (dpir.report.claims)
    params:
        h=config_hash([CFG.get("ablations"), CFG.get("run_ablations")]),
    log:
        str(P.logs(CFG) / "ablations.log"),
    shell:
        "{DPIR} ablations -q {CFGARG} > {log:q} 2>&1"
