# The paper's claims tested on our Table 4, and the HTML report (notebooks/report.ipynb run by papermill).
# The MLflow store and experiment of the training curves come from MLFLOW_TRACKING_URI and
# MLFLOW_EXPERIMENT_NAME in the environment (set in common.smk), so they never rerun the report.


# Light jobs that read the finished tables: on the submit node under a cluster executor.
localrules:
    study_claims,
    study_summary,
    claims,
    report,


rule study_claims:
    # One study's claims, on its tables and on the paper's (src/daebench/claims/).
    input:
        unpack(J.study_claims_inputs),
    output:
        "results/claims/{study}.csv",
    params:
        cfg=J.study_claims_cfg,
        tables=J.claims_tables_arg,
        upstream=J.study_claims_provenance,
    conda:
        "../../envs/daebench.yaml"
    log:
        "logs/report/claims_{study}.log",
    benchmark:
        "logs/benchmarks/report/claims_{study}.tsv"
    shell:
        "python -m daebench claims --study {wildcards.study} --cfg {params.cfg:q} --tables {params.tables}"
        " --samples {input.samples} --out {output} > {log} 2>&1"


rule claims:
    # Every study that has run (its tables exist when the DAG is built), the two-phase study always.
    input:
        J.claims_files,
    output:
        "results/claims.csv",
    conda:
        "../../envs/daebench.yaml"
    log:
        "logs/report/claims.log",
    benchmark:
        "logs/benchmarks/report/claims.tsv"
    shell:
        "python -m daebench claims-all --inputs {input} --out {output} > {log} 2>&1"


rule study_summary:
    # A study's headline numbers as JSON: the DVC stages' `metrics:` (`dvc metrics show`).
    input:
        unpack(J.summary_inputs),
    output:
        "results/summary/{study}.json",
    params:
        tables=J.claims_tables_arg,
    conda:
        "../../envs/daebench.yaml"
    log:
        "logs/report/summary_{study}.log",
    benchmark:
        "logs/benchmarks/report/summary_{study}.tsv"
    shell:
        "python -m daebench summary --study {wildcards.study} --tables {params.tables} --out {output} > {log} 2>&1"


rule report:
    input:
        table4="results/table4.csv",
        claims=J.report_claims,
        recon=J.report_recon_inputs,
        studies=J.report_study_inputs,
        notebook="notebooks/report.ipynb",
    output:
        report("results/report.html", caption="../report/report.rst", category="Report"),
    params:
        nb=J.report_notebook_params,
        upstream=J.table4_provenance,
    conda:
        "../../envs/daebench.yaml"
    log:
        # The executed notebook is a log: Snakemake keeps it (with the failing cell's traceback) when the job fails.
        nb="logs/report/report.executed.ipynb",
        txt="logs/report/report.log",
    benchmark:
        "logs/benchmarks/report/report.tsv"
    shell:
        "python -m daebench report --notebook {input.notebook} --params-json {params.nb:q}"
        " --executed {log.nb} --out-html {output} > {log.txt} 2>&1"
