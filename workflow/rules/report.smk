rule tflops:
    input:
        nets=lambda w: sorted({net_file(n) for m in CFG["tasks"][w.task]["methods"].values() for n in networks_of(m)}),
    output:
        f"{OUT}/cost/{{task}}_tflops_1280x720.json",
    params:
        h=lambda w: config_hash([CFG["tasks"][w.task]["methods"], CFG["tasks"][w.task].get("scale")]),
    threads: THREADS
    log:
        f"{OUT}/logs/tflops/{{task}}.log",
    benchmark:
        f"{OUT}/benchmarks/tflops/{{task}}.tsv",
    shell:
        "{DPIR} tflops -q {CFGARG} --task {wildcards.task:q} > {log:q} 2>&1"


rule report:
    input:
        scores=[f"{OUT}/scores/{t}/{d}/{m}/seed{s}.json" for t, d, m, s in runs()],
        manifests=sorted({f"{CFG['data_dir']}/{t}/{d}/manifest.json" for t, d, _, _ in runs()}),
        tflops=[f"{OUT}/cost/{t}_tflops_1280x720.json" for t in enabled_tasks(CFG)
                if CFG["tasks"][t]["kind"] != "burst"],
        ablations=ablation_inputs(),
    output:
        report=REPORT,
        tables=directory(f"{OUT}/tables"),
    params:
        h=config_hash([CFG.get("report"), CFG.get("description"), CFG.get("enabled_tasks"),
                       CFG.get("ablations") if CFG.get("run_ablations") else None]),
    log:
        f"{OUT}/logs/report.log",
    shell:
        "{DPIR} report -q {CFGARG} > {log:q} 2>&1"


rule ablations:
    """The paper's ablation tables alone: `snakemake --cores all ablations` (also part of `all` via the report)."""
    input:
        ablation_inputs(),
    output:
        f"{OUT}/ablations.md",
    params:
        h=config_hash([CFG.get("ablations"), CFG.get("run_ablations")]),
    log:
        f"{OUT}/logs/ablations.log",
    shell:
        "{DPIR} ablations -q {CFGARG} > {log:q} 2>&1"
