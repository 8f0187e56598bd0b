"""Registry of the pretrained files the published metrics need.

Metric code never downloads: LPIPS, FID (tf) and FID (cf) load these files
from a weights directory (default ``resources/weights``) and raise
``WeightsMissing`` when they are absent.  ``fetch_weights`` is what the
``fetch_weights`` workflow rule runs where a network exists; it downloads to
a temporary file, checks the sha256 and only then renames into place, so an
interrupted or corrupted download can never be mistaken for the real file
(clean-fid 0.1.35's own downloader writes straight to the final path).

Provenance of the hashes (no file could be downloaded while writing this;
each value below was cross-checked in several independent public projects
that pin the same file, and the torchvision / torch-hub convention that the
hash suffix in a file name is the sha256 prefix holds for both suffixed
files):
- alexnet-owt-7be5be79.pth: torchvision's ``AlexNet_Weights.IMAGENET1K_V1``
  URL; suffix 7be5be79 = sha256 prefix.
- weights-inception-2015-12-05-6726825d.pth: ``URL_INCEPTION_V3`` in the
  installed torch_fidelity/feature_extractor_inceptionv3.py (0.4.0); the same
  bytes are pytorch-fid's pt_inception-2015-12-05-6726825d.pth.
- inception-2015-12-05.pt: ``inception_url`` in the installed
  cleanfid/downloads_helper.py (0.1.35), NVIDIA's TorchScript port used by
  StyleGAN2-ADA; clean-fid itself publishes no checksum.
- The LPIPS v0.1 linear layers ship inside the ``lpips`` wheel
  (lpips/weights/v0.1/alex.pth); its sha256 below was computed on the
  installed lpips 0.1.4 and matches the value pinned by other projects.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..data.download import fetch
from ..data.store import sha256_file

__all__ = [
    "DEFAULT_WEIGHTS_DIR",
    "LPIPS_LINEAR",
    "LPIPS_LINEAR_VGG",
    "WEIGHTS",
    "WeightFile",
    "WeightsMissing",
    "available",
    "fetch_weights",
    "missing_message",
    "require",
    "sha256_file",
    "weight_path",
]

DEFAULT_WEIGHTS_DIR = "resources/weights"


@dataclass(frozen=True)
class WeightFile:
    url: str
    sha256: str
    filename: str
    used_by: str


WEIGHTS: dict[str, WeightFile] = {
    "alexnet": WeightFile(
        url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        sha256="7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02",
        filename="alexnet-owt-7be5be79.pth",
        used_by="lpips (AlexNet backbone, torchvision ImageNet weights)",
    ),
    "inception_tf": WeightFile(
        url=(
            "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
            "weights-inception-2015-12-05-6726825d.pth"
        ),
        sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
        filename="weights-inception-2015-12-05-6726825d.pth",
        used_by="fid_tf (torch-fidelity InceptionV3, TF-compatible port)",
    ),
    "inception_cf": WeightFile(
        url="https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt",
        sha256="f58cb9b6ec323ed63459aa4fb441fe750cfe39fafad6da5cb504a16f19e958f4",
        filename="inception-2015-12-05.pt",
        used_by="fid_cf (clean-fid TorchScript InceptionV3)",
    ),
    "vgg16": WeightFile(
        url="https://download.pytorch.org/models/vgg16-397923af.pth",
        sha256="397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0",
        filename="vgg16-397923af.pth",
        used_by="lpips_vgg (VGG-16 backbone, torchvision ImageNet weights): the PPL distance of Karras et al.",
    ),
}

# Shipped inside the lpips package, so they are verified, never fetched.
LPIPS_LINEAR = WeightFile(
    url="https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/alex.pth",
    sha256="df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",
    filename="alex.pth",
    used_by="lpips (v0.1 linear calibration layers, packaged in the lpips wheel)",
)
LPIPS_LINEAR_VGG = WeightFile(
    url="https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/vgg.pth",
    sha256="a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868",
    filename="vgg.pth",
    used_by="lpips_vgg (v0.1 linear calibration layers, packaged in the lpips wheel)",
)

_SIDECAR = ".verified.json"
# (resolved path) -> (size, mtime_ns, sha256) of the last hash we computed.
_VERIFIED: dict[str, tuple[int, int, str]] = {}


class WeightsMissing(FileNotFoundError):
    """Pretrained metric weights are absent (or fail their checksum)."""


def weight_path(dest_dir: str | os.PathLike, name: str) -> Path:
    return Path(dest_dir) / _entry(name).filename


def _entry(name: str) -> WeightFile:
    try:
        return WEIGHTS[name]
    except KeyError:
        raise ValueError(f"unknown weight file {name!r}; known: {sorted(WEIGHTS)}") from None


def _names(names: Iterable[str] | str | None) -> list[str]:
    if names is None:
        return list(WEIGHTS)
    if isinstance(names, str):
        names = [names]
    out = list(names)
    for n in out:
        _entry(n)
    return out


def _load_sidecar(dest: Path) -> dict:
    try:
        return json.loads((dest / _SIDECAR).read_text())
    except (OSError, ValueError):
        return {}


def _store_sidecar(dest: Path, data: dict) -> None:
    # Best effort: a read-only weights directory must still work, just slower.
    try:
        fd, tmp = tempfile.mkstemp(dir=dest, prefix=".verified.", suffix=".tmp")
    except OSError:
        return
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, dest / _SIDECAR)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _file_digest(path: Path, sidecar: dict) -> tuple[str, bool]:
    """sha256 of path, reusing a cached hash while size and mtime are unchanged.

    Returns (digest, computed_now). Hashing ~430 MB on every metric call would
    dominate short evaluation jobs, hence the cache (in-process and in a
    sidecar JSON so separate workflow jobs share it).
    """
    st = path.stat()
    key = str(path.resolve())
    stamp = (st.st_size, st.st_mtime_ns)
    hit = _VERIFIED.get(key)
    if hit is not None and hit[:2] == stamp:
        return hit[2], False
    rec = sidecar.get(path.name)
    if isinstance(rec, dict) and (rec.get("size"), rec.get("mtime_ns")) == stamp and "sha256" in rec:
        _VERIFIED[key] = (*stamp, rec["sha256"])
        return rec["sha256"], False
    digest = sha256_file(path)
    _VERIFIED[key] = (*stamp, digest)
    sidecar[path.name] = {"size": stamp[0], "mtime_ns": stamp[1], "sha256": digest}
    return digest, True


def available(dest_dir: str | os.PathLike, names: Iterable[str] | str | None = None) -> dict[str, bool]:
    """name -> True iff the file is present in dest_dir AND has the registered sha256."""
    dest = Path(dest_dir)
    sidecar = _load_sidecar(dest) if dest.is_dir() else {}
    dirty = False
    out: dict[str, bool] = {}
    for name in _names(names):
        wf = WEIGHTS[name]
        p = dest / wf.filename
        if not p.is_file():
            out[name] = False
            continue
        digest, computed = _file_digest(p, sidecar)
        dirty |= computed
        out[name] = digest == wf.sha256
    if dirty:
        _store_sidecar(dest, sidecar)
    return out


def fetch_command(dest_dir: str | os.PathLike, names: Iterable[str] | None = None) -> str:
    """The project CLI's fetch command (cli.py `fetch-weights`)."""
    tail = "" if names is None else " --names " + " ".join(names)
    return f"python -m daebench fetch-weights --dest {dest_dir}{tail}"


def missing_message(dest_dir: str | os.PathLike, names: Iterable[str] | str | None = None) -> str:
    """Human-readable explanation of which files are missing/corrupt and how to get them."""
    names = _names(names)
    dest = Path(dest_dir)
    state = available(dest, names)
    bad = [n for n in names if not state[n]]
    if not bad:
        return f"all requested weights are present and verified in {dest}"
    lines = [f"Pretrained metric weights are missing or fail their sha256 check in {dest}/:"]
    for n in bad:
        wf = WEIGHTS[n]
        p = dest / wf.filename
        why = "corrupt (sha256 mismatch)" if p.exists() else "missing"
        lines.append(f"  - {wf.filename} [{why}], needed by {wf.used_by}")
        lines.append(f"      url:    {wf.url}")
        lines.append(f"      sha256: {wf.sha256}")
    lines.append("Metric code never downloads. Where a network exists, fetch them with")
    lines.append(f"    {fetch_command(dest, bad)}")
    lines.append("or the workflow rule `fetch_weights`; or copy the files above (exact names) into")
    lines.append(f"    {dest.resolve()}/")
    lines.append("Without them only the domain-feature columns (fd_domain, featdist_domain) stand in for LPIPS/FID.")
    return "\n".join(lines)


def require(dest_dir: str | os.PathLike, names: Iterable[str] | str) -> dict[str, Path]:
    """Paths of verified files, or WeightsMissing naming what is absent."""
    names = _names(names)
    state = available(dest_dir, names)
    if not all(state.values()):
        raise WeightsMissing(missing_message(dest_dir, names))
    return {n: weight_path(dest_dir, n) for n in names}


def fetch_weights(
    dest_dir: str | os.PathLike,
    names: Iterable[str] | str | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> dict[str, Path]:
    """Download the named weights (all by default) into dest_dir, verified.

    Files already present with the right sha256 are kept.  Each download goes
    to a temporary file in dest_dir, is hashed while streaming, and is renamed
    into place only when the hash matches; on any failure the temporary file
    is removed and the error (WeightsChecksumError for a wrong hash) raised.
    """
    names = _names(names)
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    state = available(dest, names)
    out: dict[str, Path] = {}
    for name in names:
        wf = WEIGHTS[name]
        final = dest / wf.filename
        if state[name]:
            if progress:
                print(f"{wf.filename}: present, sha256 verified", file=sys.stderr)
            out[name] = final
            continue
        # The data layer's fetch streams to a temp file, verifies the sha256 and renames; on any
        # failure it raises DownloadError naming the file and leaves nothing behind.
        fetch(wf.url, final, f"sha256:{wf.sha256}", progress=progress, timeout=timeout)
        digest = wf.sha256
        # Seed the verification cache so the next available() is free.
        st = final.stat()
        _VERIFIED[str(final.resolve())] = (st.st_size, st.st_mtime_ns, digest)
        sidecar = _load_sidecar(dest)
        sidecar[wf.filename] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
        _store_sidecar(dest, sidecar)
        if progress:
            print(f"{wf.filename}: ok ({st.st_size} bytes, sha256 verified)", file=sys.stderr)
        out[name] = final
    return out
