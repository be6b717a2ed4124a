# The exact Gaussian-world section (dpir.report.gaussian): DP-IR's samplers with exact oracle parts in a
# linear-Gaussian world, their exact distortion and W2 perception against Freirich et al.'s bound.  It reads
# nothing but the config and the bundled photos (the prior's fit); the report embeds its Markdown.  Only
# when the config has a `gaussian:` section.


rule gaussian:
    output:
        str(P.gaussian_dir(CFG) / "gaussian.json"),
    params:
        h=config_hash([CFG.get("gaussian")]),
    threads: 1
    log:
        str(P.logs(CFG) / "gaussian.log"),
    benchmark:
        str(P.benchmark_pattern(CFG, "gaussian", "all")),
    shell:
        "{DPIR} gaussian -q {CFGARG} > {log:q} 2>&1"
