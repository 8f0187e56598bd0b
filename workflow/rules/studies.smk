# The tables of a study declared without a rule file of its own (daebench.studies: its `tables`): each built by
# the study's writer from the files it names, which the shared rules (training, reconstruction, scoring) make.


rule study_table:
    input:
        J.studies.study_table_inputs,
    output:
        "results/{study}/{table}.csv",
    params:
        cfg=J.studies.study_table_cfg,
    wildcard_constraints:
        study="|".join(n for n, s in STUDIES.items() if not s.rules) or "(?!)",
        table=r"table[0-9]+",
    log:
        "logs/study_table/{study}/{table}.log",
    shell:
        "python -m daebench study-table --study {wildcards.study} --table {wildcards.table} --cfg {params.cfg:q}"
        " --inputs {input} --out {output} > {log} 2>&1"
