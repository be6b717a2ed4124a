rule report:
    input:
        scores=[f"{OUT}/scores/{t}/{d}/{m}/seed{s}.json" for t, d, m, s in runs()],
        manifests=sorted({f"{CFG['data_dir']}/{t}/{d}/manifest.json" for t, d, _, _ in runs()}),
    output:
        report=REPORT,
        tables=directory(f"{OUT}/tables"),
    params:
        h=config_hash([CFG.get("report"), CFG.get("description"), CFG.get("enabled_tasks")]),
    log:
        f"{OUT}/logs/report.log",
    shell:
        "{DPIR} report -q {CFGARG} > {log} 2>&1"
