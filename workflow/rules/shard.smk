# Sharded restoration for long runs: a method with `shards: N` in its config is restored by N jobs
# (`dpir restore --shard K/N`, images K, K+N, ...) and merged by `dpir restore --merge-shards N`.
# Every image draws its noise from (seed, image id), so the merged run equals the unsharded one.
# The merged run.json is the same file rule restore writes; the ambiguity is resolved by
# restricting the method wildcard to sharded methods and by ruleorder.  Shard folders are temp():
# the merge consumes (and deletes) them, and their absence never triggers a rerun.
import re

# input functions: shards_of, shard_runs (common.smk; `snakemake --lint` wants rules and functions apart)
SHARDED_METHODS = sorted({m for t in enabled_tasks(CFG) for m in CFG["tasks"][t]["methods"] if shards_of(t, m) > 1})
SHARDED_RE = "|".join(re.escape(m) for m in SHARDED_METHODS) or "(?!)"


ruleorder: merge_shards > restore_shard > restore


rule restore_shard:
    input:
        manifest=P.manifest_pattern(CFG),
        nets=method_nets,
    output:
        temp(P.shard_record_pattern(CFG)),
    wildcard_constraints:
        method=SHARDED_RE,
        seed=r"\d+",
        k=r"\d+",
        n=r"\d+",
    params:
        h=lambda w: config_hash([method_cfg(w), CFG["tasks"][w.task].get("scale")]),
    threads: THREADS
    resources:
        gpu=1,
    log:
        P.job_log_pattern(CFG, "restore", P.SHARD_NAME),
    shell:
        "{DPIR} restore -q {CFGARG} --task {wildcards.task:q} --dataset {wildcards.dataset:q} "
        "--method {wildcards.method:q} --seed {wildcards.seed:q} --shard {wildcards.k:q}/{wildcards.n:q} > {log:q} 2>&1"


rule merge_shards:
    input:
        shard_runs,
    output:
        P.run_record_pattern(CFG),
    wildcard_constraints:
        method=SHARDED_RE,
        seed=r"\d+",
    params:
        h=lambda w: config_hash([method_cfg(w), CFG["tasks"][w.task].get("scale")]),
        n=lambda w: shards_of(w.task, w.method),
    localrule: True
    log:
        P.job_log_pattern(CFG, "restore", P.MERGE_NAME),
    shell:
        "{DPIR} restore -q {CFGARG} --task {wildcards.task:q} --dataset {wildcards.dataset:q} "
        "--method {wildcards.method:q} --seed {wildcards.seed:q} --merge-shards {params.n} > {log:q} 2>&1"
