rule train:
    input:
        manifest=lambda w: f"{CFG['data_dir']}/{task_of_network(w.network)}/{train_dataset(w.network)}/manifest.json",
        deps=lambda w: [net_file(n) for n in network_deps(w.network)],
    output:
        f"{OUT}/networks/{{network}}/model.safetensors",
    params:
        h=lambda w: config_hash(CFG["networks"][w.network]),
    threads: THREADS
    resources:
        gpu=1,
    log:
        f"{OUT}/logs/train/{{network}}.log",
    benchmark:
        f"{OUT}/benchmarks/train/{{network}}.tsv",
    shell:
        "{DPIR} train -q {CFGARG} --network {wildcards.network:q} > {log:q} 2>&1"
