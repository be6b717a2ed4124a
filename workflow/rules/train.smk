# input functions: train_manifest, train_deps (common.smk, from dpir.workflow_facts)
rule train:
    input:
        manifest=train_manifest,
        deps=train_deps,
    output:
        P.network_file_pattern(CFG),
    params:
        h=lambda w: config_hash(CFG["networks"][w.network]),
    threads: THREADS
    resources:
        gpu=1,
    log:
        P.job_log_pattern(CFG, "train", "{network}"),
    benchmark:
        P.benchmark_pattern(CFG, "train", "{network}"),
    shell:
        "{DPIR} train -q {CFGARG} --network {wildcards.network:q} > {log:q} 2>&1"
