"""Tables, plots and the Markdown report, rendered from the results JSON files only.

    tables.py          the Table type (md + csv), footnotes, digits and directions from the metric presets
    analysis.py        derived main-report tables: cost ratios, the acceleration check
    report.py          ``dpir tables`` / ``dpir report``: every (task, dataset) table, figures, report.md
    stats.py           statistics over seeds on common images, verdicts against seed noise (pure functions)
    ablation_cells.py  the descriptive ablation columns that read DP-IR method configs
    ablation_rows.py   ablation tables of kind rows / tau_sweep
    ablation_cost.py   ablation tables of kind training_cost / flops
    ablations.py       the ablation section and ablations.md (``dpir ablations``)
    paper_cost.py      Table 9 at paper size: the counted TFLOPs, ratios to DP-IR, the claim's verdicts
    plots.py           figures (perception-distortion, tau sweeps)
"""
