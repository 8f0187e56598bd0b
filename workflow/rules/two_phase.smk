# The two-phase paper's ablations (results/two_phase/): Tables 1-3 reuse the reconstruction and metrics jobs
# (stochastic mode, Table 4's settings), Table 10 the latent probe of the DBAE study; Table 5 has its own job.


rule ppl:
    input:
        model=J.final_model,
        data=J.manifest,
        classifier="resources/models/{dataset}/feature_classifier.pt",
    output:
        ppl="results/two_phase/ppl/{dataset}/{method}.json",
        strip=report("results/two_phase/ppl/{dataset}/{method}.png", caption="../report/ppl.rst",
                     category="Two-phase DAE: ablations", subcategory="Interpolations (Table 5)"),
    params:
        cfg=J.ppl_cfg,
        upstream=J.ppl_upstream,
        data=lambda w: J.data_dir(w.dataset),
    threads: TORCH_THREADS
    resources:
        gpu=GPU,
    conda:
        "../../envs/daebench.yaml"
    log:
        "logs/two_phase/ppl/{dataset}/{method}.log",
    benchmark:
        "logs/benchmarks/two_phase/ppl/{dataset}/{method}.tsv"
    shell:
        "python -m daebench ppl --cfg {params.cfg:q} --method {wildcards.method} --model {input.model}"
        " --data {params.data} --classifier {input.classifier} --out {output.ppl} --threads {threads} > {log} 2>&1"


rule two_phase_table:
    input:
        J.ablation_inputs,
    output:
        report("results/two_phase/{table}.csv", caption="../report/two_phase_table.rst",
               category="Two-phase DAE: ablations"),
    params:
        cfg=J.ablation_cfg,
        upstream=J.ablation_upstream,
    wildcard_constraints:
        table="|".join(J.ablation_tables()),
    conda:
        "../../envs/daebench.yaml"
    log:
        "logs/tables/two_phase_{table}.log",
    benchmark:
        "logs/benchmarks/tables/two_phase_{table}.tsv"
    shell:
        "python -m daebench two-phase-table --table {wildcards.table} --cfg {params.cfg:q} --inputs {input}"
        " --out {output} > {log} 2>&1"


rule two_phase_all:
    input:
        J.two_phase_all_inputs,
    localrule: True
