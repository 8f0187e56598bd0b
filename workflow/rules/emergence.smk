# Emergence curves: each study's claims at a ladder of training budgets (src/daebench/emergence.py).
# A point is the study rerun by a nested Snakemake in results/emergence/{study}/x{scale}/ on the resolved
# configuration with the study's training lengths scaled; its own .snakemake keeps reruns incremental.
# Scale 1 is the main run: its tables are that point's inputs, linked in.


rule emergence_point:
    input:
        unpack(J.studies.emergence_point_inputs),
    output:
        "results/emergence/{study}/x{scale}/results/claims/{study}.csv",
    params:
        cfg=J.studies.config_json,
        workdir=lambda w: f"results/emergence/{w.study}/x{w.scale}",
        snakefile=workflow.main_snakefile,
    threads: workflow.cores
    log:
        "logs/emergence/{study}/x{scale}.log",
    shell:
        "python -m daebench emergence-point --study {wildcards.study} --scale {wildcards.scale} --cfg {params.cfg:q}"
        " --workdir {params.workdir} --cores {threads} --snakefile {params.snakefile:q} > {log} 2>&1"


rule emergence:
    input:
        unpack(J.studies.emergence_points),
    output:
        csv="results/emergence/{study}.csv",
        png="results/emergence/{study}.png",
    params:
        cfg=J.studies.config_json,
        points=J.studies.emergence_points_arg,
    localrule: True
    log:
        "logs/emergence/{study}.log",
    shell:
        "python -m daebench emergence --study {wildcards.study} --cfg {params.cfg:q} --points {params.points}"
        " --out {output.csv} --figure {output.png} > {log} 2>&1"


rule emergence_all:
    input:
        expand("results/emergence/{study}.csv", study=config["emergence"]["studies"]),
    localrule: True
