# Result tables.


rule table4:
    input:
        J.table4_inputs,
    output:
        report("results/table4.csv", caption="../report/table4.rst", category="Two-phase DAE (Table 4)"),
    params:
        cfg=J.table4_cfg,
        upstream=J.table4_upstream,
    conda:
        "../../envs/daebench.yaml"
    log:
        "logs/tables/table4.log",
    benchmark:
        "logs/benchmarks/tables/table4.tsv"
    shell:
        "python -m daebench table4 --cfg {params.cfg:q} --inputs {input} --out {output} > {log} 2>&1"
