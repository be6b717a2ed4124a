rule restore:
    input:
        manifest=P.manifest_pattern(CFG),
        nets=method_nets,
    output:
        P.run_record_pattern(CFG),
    params:
        h=lambda w: config_hash([method_cfg(w), CFG["tasks"][w.task].get("scale")]),
        make=make_outputs,
    threads: THREADS
    resources:
        gpu=1,
    log:
        P.job_log_pattern(CFG, "restore", P.RUN_NAME),
    benchmark:
        P.benchmark_pattern(CFG, "restore", P.RUN_NAME),
    shell:
        "({params.make}{DPIR} restore -q {CFGARG} --task {wildcards.task:q} --dataset {wildcards.dataset:q} "
        "--method {wildcards.method:q} --seed {wildcards.seed:q}) > {log:q} 2>&1"


# A trained network written in a foreign checkpoint layout (`dpir export`): what a `checkpoint` method of
# the default config scores through spandrel, with no download (README "Evaluate your own method").
rule export_network:
    input:
        net_file("{network}"),
    output:
        P.export_file_pattern(CFG),
    wildcard_constraints:
        layout="basicsr|raw|esrgan_old",
    localrule: True
    log:
        P.job_log_pattern(CFG, "export", "{network}.{layout}"),
    shell:
        "{DPIR} export -q {CFGARG} --network {wildcards.network:q} --layout {wildcards.layout:q} "
        "--out {output:q} > {log:q} 2>&1"


rule score:
    input:
        run=P.run_record_pattern(CFG),
        weights=metric_stamps,
    output:
        P.scores_pattern(CFG),
    params:
        h=lambda w: config_hash([CFG["tasks"][w.task].get("metrics"), CFG["tasks"][w.task].get("crop_border")]),
    threads: 1
    log:
        P.job_log_pattern(CFG, "score", P.RUN_NAME),
    shell:
        "{DPIR} score -q {CFGARG} --task {wildcards.task:q} --dataset {wildcards.dataset:q} "
        "--method {wildcards.method:q} --seed {wildcards.seed:q} > {log:q} 2>&1"
