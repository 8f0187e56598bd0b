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
        unpack(J.studies.study_claims_inputs),
    output:
        "results/claims/{study}.csv",
    params:
        cfg=J.studies.study_claims_cfg,
        tables=J.studies.claims_tables_arg,
        upstream=J.studies.study_claims_provenance,
    log:
        "logs/report/claims_{study}.log",
    shell:
        "python -m daebench claims --study {wildcards.study} --cfg {params.cfg:q} --tables {params.tables}"
        " --samples {input.samples} --out {output} > {log} 2>&1"


rule claims:
    # Every study that has run (its tables exist when the DAG is built), the two-phase study always.
    input:
        J.studies.claims_files,
    output:
        "results/claims.csv",
    log:
        "logs/report/claims.log",
    shell:
        "python -m daebench claims-all --inputs {input} --out {output} > {log} 2>&1"


rule study_summary:
    # A study's headline numbers as JSON: the DVC stages' `metrics:` (`dvc metrics show`). The two-phase
    # study's comes with Table 4 (rule table4), so the main job alone leaves DVC something to show.
    wildcard_constraints:
        study="|".join(s for s in STUDIES if s != "two_phase"),
    input:
        unpack(J.studies.summary_inputs),
    output:
        "results/summary/{study}.json",
    params:
        tables=J.studies.claims_tables_arg,
    log:
        "logs/report/summary_{study}.log",
    shell:
        "python -m daebench summary --study {wildcards.study} --tables {params.tables} --out {output} > {log} 2>&1"


rule report:
    input:
        table4="results/table4.csv",
        claims=J.studies.report_claims,
        recon=J.two_phase.report_recon_inputs,
        studies=J.studies.report_study_inputs,
        notebook="notebooks/report.ipynb",
    output:
        report("results/report.html", caption="../report/report.rst", category="Report"),
    params:
        nb=J.studies.report_notebook_params,
        upstream=J.two_phase.table4_provenance,
        config_hash=J.studies.config_hash,
    log:
        # The executed notebook is a log: Snakemake keeps it (with the failing cell's traceback) when the job fails.
        nb="logs/report/report.executed.ipynb",
        txt="logs/report/report.log",
    shell:
        "python -m daebench report --notebook {input.notebook} --params-json {params.nb:q}"
        " --config-hash {params.config_hash} --executed {log.nb} --out-html {output} > {log.txt} 2>&1"
