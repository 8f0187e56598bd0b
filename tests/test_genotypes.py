"""Genotype data for the DDVI clustering experiment (src/daebench/data/genotypes.py, genotype_simulation.py,
thousand_genomes.py).

The 1000 Genomes download is exercised against a local HTTP server serving tiny files
under the real phase-3 file names; nothing here touches the network.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from daebench.config import ConfigError, load, validate
from daebench.data.download import DownloadError
from daebench.data.genotype_simulation import simulate_genotypes
from daebench.data.genotypes import GENOTYPES_FILE, load_genotypes, pca_features, prepare_genotypes
from daebench.data.store import IntegrityError
from daebench.data.thousand_genomes import THOUSAND_GENOMES, build_1000_genomes, parse_vcf_genotypes, read_panel

ROOT = Path(__file__).resolve().parents[1]
# ddvi.genotypes as the workflow validates it: the schema's defaults (params.yaml sets the same)
GENOTYPES = load(ROOT / "params.yaml", ROOT / "workflow/schemas/params.schema.yaml")["ddvi"]["genotypes"]
SIM_DEFAULTS = GENOTYPES["simulated"]


def genotypes_cfg(**over) -> dict:
    """The validated genotypes config with top-level keys, and keys of its sub-blocks, replaced."""
    out = copy.deepcopy(GENOTYPES)
    for k, v in over.items():
        out[k] = {**out[k], **v} if isinstance(v, dict) and isinstance(out[k], dict) else v
    return out


SMALL_SIM = {**SIM_DEFAULTS, "populations": 3, "samples_per_population": 10, "sequence_length": 2.0e5, "seed": 7}


# --------------------------------------------------------------------------- simulation

def _nearest_centroid_cv_accuracy(x: np.ndarray, y: np.ndarray, folds: int = 5) -> float:
    """Accuracy of a nearest-centroid classifier, each fold predicted from the others."""
    rng = np.random.default_rng(0)
    fold = rng.permutation(len(y)) % folds
    correct = 0
    for f in range(folds):
        train, test = fold != f, fold == f
        classes = np.unique(y[train])
        centroids = np.stack([x[train][y[train] == c].mean(axis=0) for c in classes])
        dist = ((x[test][:, None, :] - centroids[None]) ** 2).sum(axis=-1)
        correct += int((classes[dist.argmin(axis=1)] == y[test]).sum())
    return correct / len(y)


def test_simulation_is_deterministic_and_well_formed():
    G, labels, names = simulate_genotypes(**SMALL_SIM)
    G2, labels2, names2 = simulate_genotypes(**SMALL_SIM)
    np.testing.assert_array_equal(G, G2)
    np.testing.assert_array_equal(labels, labels2)
    assert names == names2 == ["pop0", "pop1", "pop2"]
    assert G.dtype == np.uint8 and labels.dtype == np.int64
    assert G.shape[0] == 30 and G.shape[1] > 50
    assert set(np.unique(G)) <= {0, 1, 2} and 2 in G and 1 in G
    np.testing.assert_array_equal(np.bincount(labels), [10, 10, 10])
    other, _, _ = simulate_genotypes(**{**SMALL_SIM, "seed": 8})
    assert other.shape != G.shape or not np.array_equal(other, G)


def test_simulation_defaults_give_separable_populations():
    G, labels, names = simulate_genotypes(**SIM_DEFAULTS)
    k, n = SIM_DEFAULTS["populations"], SIM_DEFAULTS["samples_per_population"]
    assert G.shape[0] == k * n and len(names) == k
    assert 3000 <= G.shape[1] <= 25000
    np.testing.assert_array_equal(np.bincount(labels), [n] * k)
    features, _ = pca_features(G, n_components=10, scale=30.0)
    assert features.shape == (k * n, 10)
    acc = _nearest_centroid_cv_accuracy(features, labels)
    assert acc > 0.8, f"nearest-centroid accuracy {acc:.3f} on the top 10 PCs (chance {1 / k:.2f})"
    # Clearly but not trivially separated: a random 10-dim projection is near chance.
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((k * n, 10))
    assert _nearest_centroid_cv_accuracy(noise, labels) < 0.5


@pytest.mark.parametrize("bad", [{"populations": 0}, {"seed": 0}, {"migration_rate": -1.0}, {"split_time": 0}])
def test_simulation_rejects_bad_arguments(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        simulate_genotypes(**{**SMALL_SIM, **bad})


# --------------------------------------------------------------------------- PCA

def _standardised(G: np.ndarray) -> np.ndarray:
    X = G.astype(np.float64)
    X = X[:, X.min(axis=0) != X.max(axis=0)]
    p = X.mean(axis=0) / 2
    return (X - 2 * p) / np.sqrt(p * (1 - p))


def _random_genotypes(n: int, m: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    freq = rng.uniform(0.2, 0.8, size=m)
    G = rng.binomial(2, freq, size=(n, m)).astype(np.uint8)
    G[0], G[1] = 0, 2  # every site polymorphic, so the tests control which ones are not
    return G


@pytest.mark.parametrize(("n", "m", "k"), [(20, 60, 6), (40, 12, 9)])  # more sites than people, and fewer
def test_pca_matches_sklearn_up_to_sign_with_sign_convention(n, m, k):
    from sklearn.decomposition import PCA

    G = _random_genotypes(n, m)
    G[:, 5] = 0
    G[:, 7] = 2
    G[:, 9] = 1
    features, info = pca_features(G, n_components=k, scale=30.0)
    assert features.dtype == np.float32 and features.shape == (n, k)
    assert info["k"] == k and info["n_sites"] == m - 3 and info["n_sites_dropped"] == 3

    X = _standardised(G)
    assert X.shape[1] == m - 3
    sk = PCA(n_components=k, svd_solver="full").fit(X)
    expected = sk.transform(X) / 30.0
    for j in range(k):
        sign = np.sign(features[:, j] @ expected[:, j])
        np.testing.assert_allclose(features[:, j], sign * expected[:, j], rtol=1e-4, atol=1e-5)
        # Our sign makes the largest-|loading| SNP of each component positive.
        loading = sign * sk.components_[j]
        assert loading[np.argmax(np.abs(loading))] > 0
    np.testing.assert_allclose(info["explained_variance_ratio"], sk.explained_variance_ratio_, rtol=1e-6)
    assert info["explained_variance_ratio_sum"] == pytest.approx(sk.explained_variance_ratio_.sum())


def test_pca_drops_monomorphic_sites_and_is_invariant_to_site_order():
    G = _random_genotypes(15, 40, seed=1)
    padded = np.concatenate([G, np.zeros((15, 4), np.uint8), np.full((15, 3), 2, np.uint8)], axis=1)
    a, _ = pca_features(G, n_components=5, scale=30.0)
    b, info_b = pca_features(padded, n_components=5, scale=30.0)
    np.testing.assert_array_equal(a, b)
    assert info_b["n_sites"] == 40 and info_b["n_sites_dropped"] == 7
    perm = np.random.default_rng(2).permutation(40)
    c, _ = pca_features(G[:, perm], n_components=5, scale=30.0)
    np.testing.assert_allclose(c, a, rtol=1e-4, atol=1e-6)


def test_pca_caps_k_and_scales():
    G = _random_genotypes(12, 50, seed=3)
    full, info = pca_features(G, n_components=1000, scale=1.0)
    assert info["k"] == 11 and full.shape == (12, 11)  # capped by n - 1
    assert info["explained_variance_ratio_sum"] == pytest.approx(1.0)
    few_sites = _random_genotypes(12, 4, seed=4)
    _, info = pca_features(few_sites, n_components=1000, scale=30.0)
    assert info["k"] == 4  # capped by the number of polymorphic sites
    scaled, _ = pca_features(G, n_components=3, scale=30.0)
    np.testing.assert_allclose(scaled, full[:, :3] / 30.0, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="monomorphic"):
        pca_features(np.ones((5, 3), np.uint8), n_components=2, scale=30.0)


# --------------------------------------------------------------------------- VCF and panel

VCF_TEXT = """\
##fileformat=VCFv4.1
##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">
#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\tS2\tS3\tS4
22\t100\trs1\tA\tG\t100\tPASS\tAC=3\tGT\t0|0\t0|1\t1|1\t0|0
22\t110\t.\tA\tG,T\t100\tPASS\t.\tGT\t0|1\t0|2\t1|1\t0|0
22\t120\t.\tAT\tA\t100\tPASS\t.\tGT\t0|1\t0|1\t1|1\t0|0
22\t130\trs2\tC\tT\t.\t.\t.\tGT\t0/1\t1/1\t0/0\t1/0
22\t140\t.\tG\t<DEL>\t100\tPASS\t.\tGT\t0|1\t0|1\t0|1\t0|1
22\t150\trs3\tg\ta\t100\tPASS\t.\tGT\t./.\t1|1\t1|1\t0|1
22\t160\t.\tT\tC\t100\tLowQual\t.\tGT\t1|1\t1|1\t1|1\t1|1
22\t170\t.\tT\t.\t100\tPASS\t.\tGT\t0|0\t0|0\t0|0\t0|0
22\t180\trs4\tC\tA\t100\tPASS\t.\tGT:DP\t1|0:12\t.:3\t0|0:7\t1/1:9
22\t190\t.\tG\tC\t100\tPASS\t.\tGT\t.|.\t./.\t.\t.|.
22\t200\trs5\tA\tC\t100\tPASS\t.\tGT\t0|0\t0|0\t0|1\t0|0
"""
# Kept SNP columns: rs1, rs2, rs3 (S1 missing -> rint(mean(2, 2, 1)) = 2), rs4 (S2 missing ->
# rint(mean(1, 0, 2)) = 1, GT:DP format), rs5. Skipped: multi-allelic, indel, symbolic, FILTER
# LowQual, ALT '.', and the all-missing site at 190.
EXPECTED_G = np.array([
    [0, 1, 2, 1, 0],
    [1, 2, 2, 1, 0],
    [2, 0, 2, 0, 1],
    [0, 1, 1, 2, 0],
], dtype=np.uint8)


@pytest.fixture
def vcf_files(tmp_path) -> dict[str, Path]:
    plain = tmp_path / "tiny.vcf"
    plain.write_text(VCF_TEXT)
    gz = tmp_path / "tiny.vcf.gz"
    gz.write_bytes(gzip.compress(VCF_TEXT.encode()))
    return {"plain": plain, "gz": gz}


@pytest.mark.parametrize("kind", ["plain", "gz"])
def test_parse_vcf_exact_matrix(vcf_files, kind):
    G, samples = parse_vcf_genotypes(vcf_files[kind])
    assert samples == ["S1", "S2", "S3", "S4"]
    assert G.dtype == np.uint8
    np.testing.assert_array_equal(G, EXPECTED_G)


def test_parse_vcf_thin_and_max_sites(vcf_files):
    # Candidates are rs1, rs2, rs3, rs4, the all-missing site at 190, rs5: thinning picks among
    # them, then the all-missing pick is dropped.
    G, _ = parse_vcf_genotypes(vcf_files["gz"], thin=2)
    np.testing.assert_array_equal(G, EXPECTED_G[:, [0, 2]])
    G, _ = parse_vcf_genotypes(vcf_files["gz"], thin=3)
    np.testing.assert_array_equal(G, EXPECTED_G[:, [0, 3]])
    G, _ = parse_vcf_genotypes(vcf_files["plain"], max_sites=2)
    np.testing.assert_array_equal(G, EXPECTED_G[:, :2])
    G, _ = parse_vcf_genotypes(vcf_files["plain"], max_sites=1, thin=3)
    np.testing.assert_array_equal(G, EXPECTED_G[:, :1])


def test_parse_vcf_rejects_malformed_files(tmp_path):
    no_header = tmp_path / "a.vcf"
    no_header.write_text("22\t100\t.\tA\tG\t.\tPASS\t.\tGT\t0|1\n")
    with pytest.raises(ValueError, match="before the #CHROM header"):
        parse_vcf_genotypes(no_header)
    short_row = tmp_path / "b.vcf"
    short_row.write_text("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\tS2\n"
                         "22\t100\t.\tA\tG\t.\tPASS\t.\tGT\t0|1\n")
    with pytest.raises(ValueError, match=r"b\.vcf:2"):
        parse_vcf_genotypes(short_row)


PANEL_TEXT = "sample\tpop\tsuper_pop\tgender\t\t\n" + "".join(
    f"{s}\t{p}\t{sp}\t{g}\t\t\n" for s, p, sp, g in [
        ("HG00096", "GBR", "EUR", "male"),
        ("HG00097", "GBR", "EUR", "female"),
        ("NA18486", "YRI", "AFR", "male"),
        ("NA18525", "CHB", "EAS", "female"),
        ("HG01112", "CLM", "AMR", "male"),
        ("NA19017", "LWK", "AFR", "female"),
        ("HG99999", "FIN", "EUR", "male"),  # in the panel but not in the VCF
    ])


def test_read_panel(tmp_path):
    path = tmp_path / "p.panel"
    path.write_text(PANEL_TEXT)
    panel = read_panel(path)
    assert panel["HG00096"] == ("GBR", "EUR") and panel["NA19017"] == ("LWK", "AFR")
    assert len(panel) == 7
    bad = tmp_path / "bad.panel"
    bad.write_text("sample\tpopulation\n")
    with pytest.raises(ValueError, match="super_pop"):
        read_panel(bad)


# --------------------------------------------------------------------------- 1000 Genomes download

VCF_SAMPLES = ["HG00096", "HG00097", "NA18486", "NA18525", "HG01112", "NA19017"]


def _kg_vcf(n_sites: int = 40, seed: int = 0) -> tuple[bytes, np.ndarray]:
    """A tiny VCF in the phase-3 layout (FORMAT GT, phased diploid calls) and its count matrix."""
    rng = np.random.default_rng(seed)
    haps = rng.integers(0, 2, size=(n_sites, len(VCF_SAMPLES), 2))
    lines = ["##fileformat=VCFv4.1", "##source=tiny test file in the 1000 Genomes phase 3 layout",
             "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(VCF_SAMPLES)]
    for i in range(n_sites):
        calls = "\t".join(f"{a}|{b}" for a, b in haps[i])
        lines.append(f"22\t{16050075 + 10 * i}\trs{i}\tA\tG\t100\tPASS\tAC=1;AF=0.1;NS=2504\tGT\t{calls}")
        if i % 7 == 3:  # an indel between SNPs, as in the real file
            lines.append(f"22\t{16050076 + 10 * i}\t.\tAT\tA\t100\tPASS\t.\tGT\t" + "\t".join(["0|1"] * 6))
    text = "\n".join(lines) + "\n"
    return gzip.compress(text.encode()), haps.sum(axis=2).T.astype(np.uint8)


@pytest.fixture
def kg_server(file_server):
    srv = file_server
    vcf, counts = _kg_vcf()
    panel = PANEL_TEXT.encode()
    srv.files[f"/release/20130502/{THOUSAND_GENOMES['vcf']}"] = vcf
    srv.files[f"/release/20130502/{THOUSAND_GENOMES['panel']}"] = panel
    srv.base_url = srv.url + "/release/20130502"
    srv.vcf, srv.panel, srv.counts = vcf, panel, counts
    return srv


def test_1000_genomes_download_labels_and_reuse(kg_server, tmp_path):
    dl = tmp_path / "dl"
    G, labels, names, info = build_1000_genomes(download_dir=dl, base_url=kg_server.base_url, checksums=None,
                                                max_sites=None, thin=1, label="super_pop", progress=False)
    np.testing.assert_array_equal(G, kg_server.counts)
    assert names == ["AFR", "AMR", "EAS", "EUR"]
    expected = ["EUR", "EUR", "AFR", "EAS", "AMR", "AFR"]
    assert [names[i] for i in labels] == expected and labels.dtype == np.int64
    assert sorted(kg_server.requests) == sorted(
        f"/release/20130502/{THOUSAND_GENOMES[r]}" for r in ("vcf", "panel"))
    assert (dl / "1000_genomes" / THOUSAND_GENOMES["vcf"]).read_bytes() == kg_server.vcf
    rec = info["verified"][THOUSAND_GENOMES["vcf"]]
    assert rec["algorithm"] == "sha256" and rec["checksum"] == hashlib.sha256(kg_server.vcf).hexdigest()
    assert info["verified"][THOUSAND_GENOMES["panel"]]["checksum"] == hashlib.sha256(kg_server.panel).hexdigest()

    # Second build: files are reused, no request; label by population, thinned and capped.
    kg_server.requests.clear()
    G2, labels2, names2, info2 = build_1000_genomes(download_dir=dl, base_url=kg_server.base_url, checksums=None,
                                                    max_sites=5, thin=3, label="pop", progress=False)
    assert kg_server.requests == []
    np.testing.assert_array_equal(G2, kg_server.counts[:, ::3][:, :5])
    assert names2 == ["CHB", "CLM", "GBR", "LWK", "YRI"]
    assert [names2[i] for i in labels2] == ["GBR", "GBR", "YRI", "CHB", "CLM", "LWK"]
    assert info2["verified"][THOUSAND_GENOMES["vcf"]]["downloaded"] is False

    # With correct pinned checksums the present files are verified and again not requested.
    pinned = {"vcf": "md5:" + hashlib.md5(kg_server.vcf).hexdigest(),
              "panel": "sha256:" + hashlib.sha256(kg_server.panel).hexdigest()}
    _, _, _, info3 = build_1000_genomes(download_dir=dl, base_url=kg_server.base_url, checksums=pinned,
                                        max_sites=None, thin=1, label="super_pop", progress=False)
    assert kg_server.requests == []
    assert info3["verified"][THOUSAND_GENOMES["vcf"]]["algorithm"] == "md5"


def test_1000_genomes_wrong_checksum_names_the_file(kg_server, tmp_path):
    dl = tmp_path / "dl"
    with pytest.raises(DownloadError, match=THOUSAND_GENOMES["vcf"].replace(".", r"\.")):
        build_1000_genomes(download_dir=dl, base_url=kg_server.base_url, checksums={"vcf": "md5:" + "0" * 32},
                           max_sites=None, thin=1, label="super_pop", progress=False)
    assert not (dl / "1000_genomes" / THOUSAND_GENOMES["vcf"]).exists()
    assert not [p for p in (dl / "1000_genomes").iterdir() if p.name.endswith(".part")]
    with pytest.raises(ValueError, match="unknown 1000 Genomes file role"):
        build_1000_genomes(download_dir=dl, base_url=kg_server.base_url, checksums={"vcf.gz": None},
                           max_sites=None, thin=1, label="super_pop", progress=False)


def test_1000_genomes_missing_file_and_unlisted_sample(kg_server, tmp_path):
    del kg_server.files[f"/release/20130502/{THOUSAND_GENOMES['panel']}"]
    with pytest.raises(DownloadError, match="HTTP 404"):
        build_1000_genomes(download_dir=tmp_path / "a", base_url=kg_server.base_url, checksums=None,
                           max_sites=None, thin=1, label="super_pop", progress=False)
    kg_server.files[f"/release/20130502/{THOUSAND_GENOMES['panel']}"] = PANEL_TEXT.replace(
        "NA18525", "NA00000").encode()
    with pytest.raises(DownloadError, match="NA18525"):
        build_1000_genomes(download_dir=tmp_path / "b", base_url=kg_server.base_url, checksums=None,
                           max_sites=None, thin=1, label="super_pop", progress=False)


def test_prepare_from_1000_genomes_records_sha256(kg_server, tmp_path):
    cfg = genotypes_cfg(source="1000_genomes", pca_components=3,
                        **{"1000_genomes": {"download_dir": str(tmp_path / "dl"), "base_url": kg_server.base_url,
                                            "max_sites": None}})
    manifest = prepare_genotypes(cfg, tmp_path / "out", progress=False)
    assert manifest["k"] == 3 and manifest["n_individuals"] == 6
    assert manifest["label_names"] == ["AFR", "AMR", "EAS", "EUR"]
    rec = manifest["source_checksums"][THOUSAND_GENOMES["vcf"]]
    assert rec["checksum"] == hashlib.sha256(kg_server.vcf).hexdigest() and "not verified" in rec["note"]
    features, labels, names = load_genotypes(tmp_path / "out")
    assert features.shape == (6, 3) and names == manifest["label_names"]
    assert [names[i] for i in labels] == ["EUR", "EUR", "AFR", "EAS", "AMR", "AFR"]


# --------------------------------------------------------------------------- prepare / load

def test_prepare_and_load_round_trip(tmp_path):
    cfg = genotypes_cfg(simulated=dict(SMALL_SIM), pca_components=1000, scale=30.0)
    out = tmp_path / "genotypes"
    manifest = prepare_genotypes(cfg, out, progress=False)
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == json.loads(json.dumps(manifest))
    assert manifest["source"] == "simulated" and manifest["label_names"] == ["pop0", "pop1", "pop2"]
    assert manifest["n_individuals"] == 30 and manifest["k"] == 29 and manifest["n_sites"] > 50
    assert manifest["cfg"]["simulated"] == SMALL_SIM and manifest["cfg"]["scale"] == 30.0
    assert len(manifest["explained_variance_ratio"]) == 29

    features, labels, names = load_genotypes(out)
    assert features.dtype == np.float32 and features.shape == (30, 29)
    assert labels.dtype == np.int64 and names == ["pop0", "pop1", "pop2"]
    np.testing.assert_array_equal(np.bincount(labels), [10, 10, 10])
    G, sim_labels, _ = simulate_genotypes(**SMALL_SIM)
    expected, _ = pca_features(G, n_components=1000, scale=30.0)
    np.testing.assert_array_equal(features, expected)
    np.testing.assert_array_equal(labels, sim_labels)

    # Same cfg, same bytes (DVC-friendly).
    again = prepare_genotypes(cfg, tmp_path / "again", progress=False)
    assert again["sha256"] == manifest["sha256"]


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_npz_raises_integrity_error(tmp_path, damage):
    out = tmp_path / "genotypes"
    prepare_genotypes(genotypes_cfg(simulated=dict(SMALL_SIM), pca_components=4), out, progress=False)
    path = out / GENOTYPES_FILE
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[-200] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"genotypes\.npz.*Delete"):
        load_genotypes(out)


@pytest.mark.parametrize("bad, key", [
    ({"source": "hapmap"}, "ddvi.genotypes.source"),
    ({"pca_component": 10}, "pca_component"),
    ({"simulated": {"n_populations": 3}}, "n_populations"),
    ({"1000_genomes": {"label": "gender"}}, "ddvi.genotypes.1000_genomes.label"),
    ({"scale": 0}, "ddvi.genotypes.scale"),
    ({"simulated": {"seed": 0}}, "ddvi.genotypes.simulated.seed"),
])
def test_bad_config_names_the_key(bad, key):
    """The schema validates the genotypes config (types, bounds, unknown keys); errors name the key."""
    params = load(ROOT / "params.yaml", ROOT / "workflow/schemas/params.schema.yaml")
    for k, v in bad.items():
        g = params["ddvi"]["genotypes"]
        g[k] = {**g[k], **v} if isinstance(v, dict) and isinstance(g.get(k), dict) else v
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(params, ROOT / "workflow/schemas/params.schema.yaml")


def test_an_unvalidated_config_is_refused(tmp_path):
    with pytest.raises(ValueError, match="lacks pca_components, scale"):
        prepare_genotypes({"source": "simulated", "simulated": dict(SMALL_SIM)}, tmp_path)
    assert not (tmp_path / "manifest.json").exists()


def test_load_without_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        load_genotypes(tmp_path)
