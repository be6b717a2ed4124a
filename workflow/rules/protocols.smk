# The protocol-sensitivity table (dpir.report.protocols): the main tables' restored PNGs re-scored under
# each published protocol (SR Y/RGB and crops, the official SyntheticBurst score, LPIPS alex/vgg).  It reads
# the restored images of every main-table run (their results files are the inputs) and the prepared
# targets; the report embeds its Markdown.


rule protocols:
    input:
        scores=score_files(F.runs(CFG)),
        manifests=sorted({manifest_file(t, d) for t, d, _, _ in F.runs(CFG)}),
    output:
        str(P.protocols(CFG)),
        str(P.protocols(CFG).with_suffix(".md")),
    params:
        h=config_hash([(CFG.get("report") or {}).get("protocols"), CFG.get("enabled_tasks"),
                       {t: [CFG["tasks"][t].get(k) for k in ("metrics", "crop_border", "scale", "kind")]
                        for t in enabled_tasks(CFG)}]),
    threads: 1
    log:
        str(P.logs(CFG) / "protocols.log"),
    benchmark:
        str(P.benchmark_pattern(CFG, "protocols", "all")),
    shell:
        "{DPIR} protocols -q {CFGARG} > {log:q} 2>&1"
