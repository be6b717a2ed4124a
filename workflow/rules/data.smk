rule prepare:
    output:
        manifest=f"{CFG['data_dir']}/{{task}}/{{dataset}}/manifest.json",
    params:
        h=lambda w: config_hash([CFG["datasets"][w.dataset], CFG["tasks"][w.task].get("degradation"),
                                 CFG["tasks"][w.task].get("scale")]),
    log:
        f"{OUT}/logs/prepare/{{task}}_{{dataset}}.log",
    shell:
        "{DPIR} prepare -q {CFGARG} --task {wildcards.task:q} --dataset {wildcards.dataset:q} > {log:q} 2>&1"
