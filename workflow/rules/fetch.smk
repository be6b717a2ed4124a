# Networks with released weights: `official: <fetch name or path>` in a network's config entry.
# They are imported (fetched, verified, converted to our checkpoint format), never trained: the
# import rule writes the same file as rule train, and the ambiguity is resolved twice over, so no
# official network can reach `dpir train`:
#   - rule import_official matches only official networks (wildcard constraint below);
#   - for those, it outranks rule train (ruleorder), whose pattern matches every network.
import re

OFFICIAL_NETWORKS = sorted(n for n in CFG["networks"] if F.is_official(CFG, n))

# input function: official_input (common.smk; `snakemake --lint` wants rules and functions apart)


ruleorder: import_official > train

FETCH_ENTRIES = fetch_entries()


rule fetch:
    """Download and verify one registry entry (resumable, checksum-verified, unpacked); its stamp is the
    input of the jobs that read it.  A local rule: on clusters, downloads run where the network is (the
    login node), never on compute nodes, and a dry run lists them."""
    output:
        P.fetch_stamp_pattern(CFG),
    wildcard_constraints:
        entry="|".join(re.escape(n) for n in FETCH_ENTRIES) or "(?!)",
    localrule: True
    log:
        P.job_log_pattern(CFG, "fetch", "{entry}"),
    shell:
        "{DPIR} fetch -q {wildcards.entry:q} --stamp {output:q} > {log:q} 2>&1"


rule import_official:
    input:
        official_input,
    output:
        P.network_file_pattern(CFG),
    wildcard_constraints:
        # (?!) matches nothing: without official networks the rule is inert
        network="|".join(re.escape(n) for n in OFFICIAL_NETWORKS) or "(?!)",
    params:
        h=lambda w: config_hash(CFG["networks"][w.network]),
    # downloads need the login node's network on clusters; loading weights is light
    localrule: True
    log:
        P.job_log_pattern(CFG, "import_official", "{network}"),
    shell:
        "{DPIR} import-official -q {CFGARG} --network {wildcards.network:q} > {log:q} 2>&1"
