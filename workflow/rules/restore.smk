rule restore:
    input:
        manifest=f"{CFG['data_dir']}/{{task}}/{{dataset}}/manifest.json",
        nets=lambda w: [net_file(n) for n in networks_of(method_cfg(w))],
    output:
        f"{OUT}/restored/{{task}}/{{dataset}}/{{method}}/seed{{seed}}/run.json",
    params:
        h=lambda w: config_hash([method_cfg(w), CFG["tasks"][w.task].get("scale")]),
    threads: THREADS
    resources:
        gpu=1,
    log:
        f"{OUT}/logs/restore/{{task}}_{{dataset}}_{{method}}_seed{{seed}}.log",
    benchmark:
        f"{OUT}/benchmarks/restore/{{task}}_{{dataset}}_{{method}}_seed{{seed}}.tsv",
    shell:
        "{DPIR} restore -q {CFGARG} --task {wildcards.task:q} --dataset {wildcards.dataset:q} "
        "--method {wildcards.method:q} --seed {wildcards.seed:q} > {log:q} 2>&1"


rule score:
    input:
        f"{OUT}/restored/{{task}}/{{dataset}}/{{method}}/seed{{seed}}/run.json",
    output:
        f"{OUT}/scores/{{task}}/{{dataset}}/{{method}}/seed{{seed}}.json",
    params:
        h=lambda w: config_hash([CFG["tasks"][w.task].get("metrics"), CFG["tasks"][w.task].get("crop_border")]),
    threads: 1
    log:
        f"{OUT}/logs/score/{{task}}_{{dataset}}_{{method}}_seed{{seed}}.log",
    shell:
        "{DPIR} score -q {CFGARG} --task {wildcards.task:q} --dataset {wildcards.dataset:q} "
        "--method {wildcards.method:q} --seed {wildcards.seed:q} > {log:q} 2>&1"
