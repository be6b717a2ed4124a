# dpir-bench workflow: `snakemake --cores all` regenerates results/report.md from the config.
#   config/config.yaml  embedded default (offline, CPU, minutes)
#   config/paper.yaml   paper scale       (snakemake --cores 8 all --configfile config/paper.yaml)
#   config/test.yaml    tiny CI config
import os

# Every rule calls the `dpir` command line; see `python -m dpir --help`.

configfile: os.path.join(workflow.basedir, "config", "config.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/fetch.smk"
include: "workflow/rules/restore.smk"
include: "workflow/rules/shard.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/protocols.smk"
include: "workflow/rules/gaussian.smk"


localrules:
    prepare,
    score,
    report,
    protocols,
    ablations,


rule all:
    input:
        REPORT,
        [str(P.ablations(CFG))] if ablation_tables(CFG) else [],
    default_target: True
