# Emergence curves: each study's claims at a ladder of training budgets (src/daebench/emergence.py).
# A point is the study rerun by a nested Snakemake in results/emergence/{study}/x{scale}/ on the resolved
# configuration with the study's training lengths scaled; its own .snakemake keeps reruns incremental.
# Scale 1 is the main run: its tables are that point's inputs, linked in.


rule emergence_point:
    input:
        unpack(J.emergence_point_inputs),
    output:
        "results/emergence/{study}/x{scale}/results/claims/{study}.csv",
    params:
        cfg=J.config_json,
        workdir=lambda w: f"results/emergence/{w.study}/x{w.scale}",
        snakefile=workflow.main_snakefile,
    threads: workflow.cores
    conda:
        "../../envs/daebench.yaml"
    log:
        "logs/emergence/{study}/x{scale}.log",
    benchmark:
        "logs/benchmarks/emergence/{study}/x{scale}.tsv"
    shell:
        "python -m daebench emergence-point --study {wildcards.study} --scale {wildcards.scale} --cfg {params.cfg:q}"
        " --workdir {params.workdir} --cores {threads} --snakefile {params.snakefile:q} > {log} 2>&1"


rule emergence:
    input:
        unpack(J.emergence_points),
    output:
        csv="results/emergence/{study}.csv",
        png="results/emergence/{study}.png",
    params:
        cfg=J.config_json,
        points=J.emergence_points_arg,
    localrule: True
    conda:
        "../../envs/daebench.yaml"
    log:
        "logs/emergence/{study}.log",
    benchmark:
        "logs/benchmarks/emergence/{study}.tsv"
    shell:
        "python -m daebench emergence --study {wildcards.study} --cfg {params.cfg:q} --points {params.points}"
        " --out {output.csv} --figure {output.png} > {log} 2>&1"


rule emergence_all:
    input:
        expand("results/emergence/{study}.csv", study=config["emergence"]["studies"]),
    localrule: True
