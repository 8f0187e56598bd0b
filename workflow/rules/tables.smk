# Result tables.


rule table4:
    input:
        J.two_phase.table4_inputs,
    output:
        table=report("results/table4.csv", caption="../report/table4.rst", category="Two-phase DAE (Table 4)"),
        # the study's headline numbers (`dvc metrics show`), written by the main job itself
        summary="results/summary/two_phase.json",
    params:
        cfg=J.two_phase.table4_cfg,
        upstream=J.two_phase.table4_upstream,
    log:
        "logs/tables/table4.log",
    shell:
        "python -m daebench table4 --cfg {params.cfg:q} --inputs {input} --out {output.table} --summary {output.summary}"
        " > {log} 2>&1"
