"""The two budget/NFE ladders added to existing studies: DDVI's Table 5 (NMI against training time) and DBAE's
Table 11 (generation at a ladder of NFE). Shared runs are the existing tables' jobs; the tables read the right
cells."""
import copy
import json
from types import SimpleNamespace

import pandas as pd
import pytest

from conftest import ROOT
from daebench.config import load
from daebench.jobs import dbae, ddvi, ddvi_budget
from daebench.tables import write_ddvi_table5


@pytest.fixture(scope="module")
def config():
    return load(ROOT / "params.yaml", ROOT / "workflow/schemas/params.schema.yaml")


def test_table5_rows_are_the_baselines_and_ddvi_at_each_t(config):
    runs = ddvi_budget.budget_runs(config)
    assert runs == [("aevb", None), ("aevb_iaf", None), ("aaeb", None), ("ddvi", 5), ("ddvi", 10), ("ddvi", 20)]
    assert ddvi_budget.parse_run(ddvi_budget.run_name("ddvi", 10)) == ("ddvi", 10)
    assert ddvi_budget.parse_run("aevb") == ("aevb", None)


def test_table5_at_scale_one_and_own_t_is_table3s_run(config):
    # the same slice as Table 3's job, so the same file: planned once
    shared = ddvi_budget.budget_slice(config, "ddvi-T20", 1, 0)
    assert shared == ddvi.ddvi_job_slice(config, "cluster", "mixture", "ddvi", 0)
    assert ddvi_budget.budget_files(config, "ddvi-T20", 1.0, 0)[0] == "resources/ddvi/cluster/mixture/ddvi/seed0.pt"
    assert ddvi_budget.budget_files(config, "aevb", 1, 0)[0] == "resources/ddvi/cluster/mixture/aevb/seed0.pt"
    # another T or budget is a run of its own, with the examples and T it names
    own = ddvi_budget.budget_slice(config, "ddvi-T5", 0.5, 0)
    assert own["method"]["steps"] == 5 and own["train"]["examples"] == config["ddvi"]["train"]["examples"] // 2
    assert ddvi_budget.budget_files(config, "ddvi-T5", 0.5, 0) == (
        "resources/ddvi/budget/ddvi-T5/x0.5/seed0.pt", "results/ddvi/budget/ddvi-T5/x0.5/seed0.json")


def test_table5_averages_seeds_and_reads_the_training_time(tmp_path, config):
    cfg = copy.deepcopy(config)
    cfg["ddvi"]["table5"].update(methods=["aevb", "ddvi"], ddvi_steps=[10], scales=[0.5, 1], seeds=[0, 1])
    cells = ddvi_budget.table5_cells(cfg)
    runs = []
    for i, c in enumerate(cells):
        r = tmp_path / f"r{i}.json"
        nmi = 0.1 * c["scale"] + 0.01 * c["seed"] + (0.2 if c["method"] == "ddvi" else 0.0)
        seconds = 60.0 * c["scale"] * (2 if c["method"] == "ddvi" else 1) + c["seed"]
        r.write_text(json.dumps({"method": c["method"], "setting": "cluster", "metrics": {"nmi": nmi},
                                 "train_seconds": seconds}))
        runs.append(r)
    df = write_ddvi_table5(json.loads(ddvi_budget.table5_cfg(cfg, None)), runs, tmp_path / "t5.csv")
    assert list(df["label"]) == ["AEVB", "AEVB", "DDVI (T=10)", "DDVI (T=10)"]
    row = df[(df["label"] == "DDVI (T=10)") & (df["scale"] == 1)].iloc[0]
    assert row["nmi"] == pytest.approx(0.305) and row["n_seeds"] == 2 and row["nmi_ci95"] > 0
    assert row["train_minutes"] == pytest.approx((120.0 + 121.0) / 2 / 60)
    assert row["examples"] == cfg["ddvi"]["train"]["examples"]
    with pytest.raises(ValueError, match="r7.json belongs to ddvi/cluster, expected aevb/cluster"):
        write_ddvi_table5(json.loads(ddvi_budget.table5_cfg(cfg, None)), runs[::-1], tmp_path / "x.csv")
    old = json.loads(runs[0].read_text())
    runs[0].write_text(json.dumps({k: v for k, v in old.items() if k != "train_seconds"}))
    with pytest.raises(ValueError, match="no train_seconds"):
        write_ddvi_table5(json.loads(ddvi_budget.table5_cfg(cfg, None)), runs, tmp_path / "y.csv")


def test_table11_reuses_table4s_generation_at_its_nfe(config):
    inputs = dbae.dbae_table_inputs(config, SimpleNamespace(table="table11"))
    g = config["dbae"]["generation"]
    assert len(inputs) == len(g["methods"]) * 2 * len(config["dbae"]["table11"]["nfe"])
    assert "results/dbae/gen_metrics/digits/dbae/prior.json" in inputs  # Table 4's own file at generation.nfe
    assert "results/dbae/gen_metrics/digits/dbae/prior_nfe5.json" in inputs
    at5 = dbae.generation_slice(config, "digits", "dbae", "prior", 5)
    assert at5["generation"]["nfe"] == 5
    assert {k: v for k, v in at5.items() if k != "generation"} == \
        {k: v for k, v in dbae.generation_slice(config, "digits", "dbae", "prior").items() if k != "generation"}


def test_table11_ladder_leaves_the_other_dbae_tables_provenance_alone(config):
    cfg = copy.deepcopy(config)
    cfg["dbae"]["table11"]["nfe"] = [20, 7]
    for table in ("table1", "table2", "table4", "table9"):
        w = SimpleNamespace(table=table)
        assert dbae.dbae_table_upstream(cfg, w) == dbae.dbae_table_upstream(config, w), table
    w = SimpleNamespace(table="table11")
    assert dbae.dbae_table_upstream(cfg, w) != dbae.dbae_table_upstream(config, w)


def test_table5_reference_has_the_papers_warm_up_as_blank():
    from daebench.claims import reference_dir

    ref = pd.read_csv(reference_dir() / "ddvi_table5_nmi_time.csv")
    ddvi10 = ref[(ref["method"] == "DDVI") & (ref["T"] == 10)].set_index("minutes")["nmi"]
    assert pd.isna(ddvi10[10]) and ddvi10[60] == pytest.approx(0.70)
    assert len(ref) == 6 * 7


def test_a_checkpoint_keeps_its_training_time_across_a_resume(tmp_path):
    import time

    import torch

    from daebench.train import train_phase

    model = torch.nn.Linear(2, 2)
    data = torch.randn(64, 2)

    def loss(m, x, g):
        return {"mse": (m(x) - x).square().mean(1)}

    tc = {"batch_size": 8, "lr": 1e-3, "warmup_examples": 0, "ema_decay": 0.9, "checkpoint_every": 5,
          "log_every": 5, "seed": 0, "device": "cpu"}
    ck = tmp_path / "r.pt"
    part = train_phase(model, loss, data, steps=10, phase_index=0, train_cfg=tc, ckpt_path=ck, out_path=tmp_path / "a.pt",
                       config={}, progress=False)
    assert part["train_seconds"] > 0
    # a resumed attempt adds its own time to the interrupted one's
    torch.save({**torch.load(tmp_path / "a.pt", weights_only=True), "step": 5, "train_seconds": 100.0}, ck)
    t0 = time.time()
    final = train_phase(model, loss, data, steps=10, phase_index=0, train_cfg=tc, ckpt_path=ck,
                        out_path=tmp_path / "b.pt", config={}, progress=False)
    assert 100.0 < final["train_seconds"] <= 100.0 + (time.time() - t0) + 1.0
