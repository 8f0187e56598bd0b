# The two-phase paper's ablations (results/two_phase/): Tables 1-3 reuse the reconstruction and metrics jobs
# (stochastic mode, Table 4's settings), Table 10 the latent probe of the DBAE study; Table 5 has its own job.


rule ppl:
    input:
        model=J.training.final_model,
        data=P.MANIFEST,
        classifier=P.CLASSIFIER,
    output:
        ppl="results/two_phase/ppl/{dataset}/{method}.json",
        strip=report("results/two_phase/ppl/{dataset}/{method}.png", caption="../report/ppl.rst",
                     category="Two-phase DAE: ablations", subcategory="Interpolations (Table 5)"),
    params:
        cfg=J.two_phase.ppl_cfg,
        upstream=J.two_phase.ppl_upstream,
        data=lambda w: J.data.data_dir(w.dataset),
    threads: TORCH_THREADS
    resources:
        gpu=GPU,
    log:
        "logs/two_phase/ppl/{dataset}/{method}.log",
    shell:
        "python -m daebench ppl --cfg {params.cfg:q} --method {wildcards.method} --model {input.model}"
        " --data {params.data} --classifier {input.classifier} --out {output.ppl} --threads {threads} > {log} 2>&1"


rule two_phase_table:
    input:
        J.two_phase.ablation_inputs,
    output:
        report("results/two_phase/{table}.csv", caption="../report/two_phase_table.rst",
               category="Two-phase DAE: ablations"),
    params:
        cfg=J.two_phase.ablation_cfg,
        upstream=J.two_phase.ablation_upstream,
    wildcard_constraints:
        table="|".join(J.two_phase.ablation_tables()),
    log:
        "logs/tables/two_phase_{table}.log",
    shell:
        "python -m daebench two-phase-table --table {wildcards.table} --cfg {params.cfg:q} --inputs {input}"
        " --out {output} > {log} 2>&1"


rule two_phase_all:
    input:
        J.two_phase.two_phase_all_inputs,
    localrule: True
