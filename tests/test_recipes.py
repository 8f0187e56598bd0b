"""Adding things is cheap (docs/architecture.md, recipes): a schedule is one function and one registration
line; a sampler for one family is one function and one registration line. Each test makes exactly those
two edits to a copy of the package and checks, in a fresh interpreter, that everything downstream follows:
config validation (the schema's registry-backed enums), the factories, the workflow's mode wildcard and the
CLI's choices."""
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def edited_package(tmp_path: Path, edits: dict[str, list[tuple[str, str]]]) -> Path:
    """A copy of src/daebench with each (old, new) replacement made once; returns the src dir."""
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src/daebench", src / "daebench", ignore=shutil.ignore_patterns("__pycache__"))
    for rel, replacements in edits.items():
        path = src / "daebench" / rel
        text = path.read_text()
        for old, new in replacements:
            assert text.count(old) == 1, f"{rel}: {old!r} is not unique"
            text = text.replace(old, new)
        path.write_text(text)
    return src


def run(src: Path, code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    return proc.stdout


def test_adding_a_schedule_is_one_function_and_one_line(tmp_path):
    src = edited_package(tmp_path, {"diffusion/schedules.py": [  # the two edits: the function, its line
        ("def _shifted_cosine(", ("def half_cosine(t: torch.Tensor) -> torch.Tensor:\n"
                                 "    return cosine(t) ** 2\n\n\ndef _shifted_cosine(")),
        ('    "vp_linear": lambda scale, num_steps: vp_linear,\n',
         ('    "vp_linear": lambda scale, num_steps: vp_linear,\n'
         '    "half_cosine": lambda scale, num_steps: half_cosine,\n')),
    ]})
    out = run(src, """
import copy, torch, yaml
from daebench.config import ConfigError, validate
from daebench.diffusion.schedules import get_schedule
from daebench.methods import get_family
params = yaml.safe_load(open("params.yaml"))
params["methods"]["dae_1phase_sc4"]["phases"][0]["schedule"] = {"name": "half_cosine"}
cfg = validate(copy.deepcopy(params), "workflow/schemas/params.schema.yaml")
t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
print("alpha", get_schedule("half_cosine")(t).tolist())
m = cfg["methods"]["dae_1phase_sc4"]
loss = get_family("dae").phase_loss(m, m["phases"][0])
params["methods"]["dae_1phase_sc4"]["phases"][0]["schedule"] = {"name": "quarter_cosine"}
try:
    validate(params, "workflow/schemas/params.schema.yaml")
except ConfigError as err:
    print("rejected", "half_cosine" in str(err))
""")
    assert "alpha [1.0" in out and "rejected True" in out, out


def test_adding_a_sampler_to_one_family_is_one_function_and_one_line(tmp_path):
    src = edited_package(tmp_path, {"methods/vpvae.py": [  # the registration line (the function: below)
        ('SAMPLERS = {"sde": samplers.sample_vp_sde, "ode": samplers.sample_vp_ode}',
         'SAMPLERS = {"sde": samplers.sample_vp_sde, "ode": samplers.sample_vp_ode, "ode_x2": samplers.sample_vp_ode_x2}'),
    ]})
    path = src / "daebench/diffusion/samplers.py"
    path.write_text(path.read_text() + '''

def sample_vp_ode_x2(model, x, ts, cond=None, generator=None, *, schedule, denoise=True):
    """The probability-flow ODE at twice the steps (a test sampler)."""
    ts = torch.as_tensor(ts, dtype=torch.float64)
    fine = torch.cat([torch.stack([a, (a + b) / 2]) for a, b in zip(ts[:-1], ts[1:])] + [ts[-1:]])
    return sample_vp_ode(model, x, fine, cond, generator, schedule=schedule, denoise=denoise)
''')
    out = run(src, """
import yaml
from daebench.cli import build_parser
from daebench.config import registries, validate
from daebench.config import modes
params = yaml.safe_load(open("params.yaml"))
params["scorevae"]["modes"] = ["sde", "ode_x2"]
validate(params, "workflow/schemas/params.schema.yaml")
print("modes", modes())
print("scorevae", registries()["modes.scorevae"], "dae", registries()["modes.dae"])
a = build_parser().parse_args(["reconstruct", "--cfg", "{}", "--data", "d", "--out", "o", "--method", "scorevae",
                               "--mode", "ode_x2", "--model", "m"])
print("cli", a.mode)
""")
    assert "'ode_x2'" in out and "cli ode_x2" in out, out
    assert "dae ['stochastic', 'inversion']" in out  # only the VP families got it
