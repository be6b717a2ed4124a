rule prepare:
    input:
        prepare_input,
    output:
        manifest=P.manifest_pattern(CFG),
    params:
        h=lambda w: config_hash([CFG["datasets"][w.dataset], CFG["tasks"][w.task].get("degradation"),
                                 CFG["tasks"][w.task].get("scale")]),
    log:
        P.job_log_pattern(CFG, "prepare", "{task}_{dataset}"),
    shell:
        "{DPIR} prepare -q {CFGARG} --task {wildcards.task:q} --dataset {wildcards.dataset:q} > {log:q} 2>&1"
