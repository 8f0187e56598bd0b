"""Checksum-verified downloads.

A file is streamed to a temporary name next to its destination, hashed while
it streams, and moved into place only once its size and checksum are right,
so ``download_dir`` never holds a partial file under the real name (the
failure mode clean-fid 0.1.35 has, see docs/architecture.md, "Known pitfalls").
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._fs import open_temp_sibling

__all__ = ["DownloadError", "fetch", "file_digest", "parse_checksum", "parse_downloaded"]

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_HEX_LENGTHS = {32: "md5", 40: "sha1", 64: "sha256"}


class DownloadError(RuntimeError):
    """A source file could not be downloaded, verified or read."""


def parse_checksum(spec: str) -> tuple[str, str]:
    """Split ``"md5:abc..."`` / ``"sha256:..."`` / bare hex into (algorithm, hexdigest).

    A bare hex string is classified by its length (32 md5, 40 sha1, 64 sha256).
    """
    spec = spec.strip()
    if ":" in spec:
        algo, _, digest = spec.partition(":")
        algo = algo.lower()
    else:
        digest = spec
        algo = _HEX_LENGTHS.get(len(spec), "")
    digest = digest.lower()
    if algo not in hashlib.algorithms_available or not digest or any(
        ch not in "0123456789abcdef" for ch in digest
    ):
        raise ValueError(
            f"cannot parse checksum {spec!r}: use 'md5:<hex>', 'sha256:<hex>' or a bare "
            "32/64-digit hex digest"
        )
    return algo, digest


def file_digest(path: str | os.PathLike, algo: str) -> str:
    """Hex digest of a file with the given hashlib algorithm."""
    h = hashlib.new(algo)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _progress_bar(total: int | None, desc: str, enabled: bool) -> Any:
    try:
        from ..progress import tqdm
    except ImportError:  # progress is cosmetic; never fail a download for it
        return contextlib.nullcontext(None)
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                disable=not enabled, leave=False)


def _manual_hint(dest: Path, algo: str, digest: str | None) -> str:
    if digest is None:
        return f"download it manually and place it at {dest} (an existing file is used without any download)"
    return (f"download it manually, check that its {algo} is {digest}, and place it at "
            f"{dest} (an existing file with the right checksum is used without any download)")


def fetch(
    url: str,
    dest: str | os.PathLike,
    checksum: str | None,
    *,
    progress: bool = True,
    timeout: float = 60.0,
    offline: bool = False,
) -> dict[str, Any]:
    """Make sure ``dest`` holds the file at ``url`` with the given checksum.

    Parameters
    ----------
    url : str
        Where to download from if ``dest`` is absent or wrong.
    dest : path
        Final location. An existing file with the right checksum is used as is
        (no network request).
    checksum : str or None
        Expected checksum (see :func:`parse_checksum`). ``None`` where no published checksum is
        known: the file is downloaded (or an existing one used) unverified, and the returned record
        carries its sha256 and a ``note`` saying so, for a manifest (pin that value afterwards).
    progress : bool
        Show a tqdm progress bar while downloading.
    timeout : float
        Socket timeout in seconds.
    offline : bool
        Never download: use ``dest`` if it is there (and verified), else raise. Preprocessing runs this way
        (it may run on a cluster node without network); the download step runs first, on the submit node.

    Returns
    -------
    dict
        ``{"file", "url", "algorithm", "checksum", "downloaded"}``.

    Raises
    ------
    DownloadError
        On a network error, a truncated transfer or a checksum mismatch. No
        partial file is left behind.
    """
    dest = Path(dest)
    if checksum is None:
        algo, expected = "sha256", None
        record = {"file": dest.name, "url": url, "algorithm": algo,
                  "note": "no checksum pinned: not verified; this is the sha256 of the file used"}
        if dest.is_file():
            got = file_digest(dest, algo)
            log.warning("no checksum pinned for %s; using the existing file unverified (sha256 %s)", dest, got)
            return {**record, "checksum": got, "downloaded": False}
    else:
        algo, expected = parse_checksum(checksum)
        record = {"file": dest.name, "url": url, "algorithm": algo, "checksum": expected}

    stale_note = ""
    if dest.is_file():
        got = file_digest(dest, algo)
        if got == expected:
            log.info("using verified %s (%s %s)", dest, algo, got)
            return {**record, "downloaded": False}
        log.warning("%s exists but its %s is %s, expected %s; downloading again", dest, algo,
                    got, expected)
        stale_note = (f" Note: the existing {dest} also has the wrong {algo} ({got}); it was "
                      "left in place but will not be used.")

    if offline:
        raise DownloadError(
            f"{dest} is {'not the expected file' if stale_note else 'missing'} and preprocessing does not download "
            "(it may run on a node without network). Fetch it first with the download step (Snakemake: rule "
            f"download_data; by hand: `python -m daebench download-data`), or {_manual_hint(dest, algo, expected)}."
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = open_temp_sibling(dest, ".part")
    out = os.fdopen(fd, "wb")
    try:
        h = hashlib.new(algo)
        received = 0
        total: int | None = None
        try:
            req = urllib.request.Request(url, headers={"User-Agent": "daebench"})
            with out, urllib.request.urlopen(req, timeout=timeout) as resp:
                length = resp.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                log.info("downloading %s -> %s", url, dest)
                with _progress_bar(total, dest.name, progress) as bar:
                    while True:
                        block = resp.read(_CHUNK)
                        if not block:
                            break
                        out.write(block)
                        h.update(block)
                        received += len(block)
                        if bar is not None:
                            bar.update(len(block))
        except http.client.IncompleteRead as exc:
            raise DownloadError(
                f"Download of {dest.name} from {url} was cut off after "
                f"{received + len(exc.partial)} bytes (truncated transfer); nothing was written "
                f"to {dest}. Retry, or {_manual_hint(dest, algo, expected)}.{stale_note}"
            ) from exc
        except urllib.error.HTTPError as exc:
            raise DownloadError(
                f"Server answered HTTP {exc.code} ({exc.reason}) for {dest.name} at {url}. "
                f"Nothing was written to {dest}. Check base_url (a mirror may lay files out "
                f"differently), or {_manual_hint(dest, algo, expected)}.{stale_note}"
            ) from exc
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise DownloadError(
                f"Network (or local I/O) error while downloading {dest.name} from {url}: {reason}. Nothing was "
                f"written to {dest}. If this machine cannot reach that server, pass base_url= for "
                f"a mirror, or {_manual_hint(dest, algo, expected)}.{stale_note}"
            ) from exc

        if total is not None and received != total:
            raise DownloadError(
                f"Download of {dest.name} from {url} is truncated: got {received} of {total} "
                f"bytes; nothing was written to {dest}. Retry, or "
                f"{_manual_hint(dest, algo, expected)}.{stale_note}"
            )
        got = h.hexdigest()
        if expected is not None and got != expected:
            raise DownloadError(
                f"Checksum mismatch for {dest.name} downloaded from {url}: expected {algo} "
                f"{expected}, got {got} ({received} bytes). The download is corrupted or "
                f"truncated, or the server holds a different file; it was discarded and nothing "
                f"was written to {dest}. Retry later, pass base_url= for a trusted mirror, or "
                f"{_manual_hint(dest, algo, expected)}.{stale_note}"
            )
        os.replace(tmp, dest)
    except BaseException:
        out.close()
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    if expected is None:
        log.warning("no checksum pinned for %s: downloaded unverified, sha256 %s (pin it)", dest.name, got)
        return {**record, "checksum": got, "downloaded": True}
    return {**record, "downloaded": True}


def parse_downloaded(path: Path, record: dict[str, Any], what: str, parser: Callable[[Path], Any],
                     errors: tuple[type[BaseException], ...] = (OSError, EOFError, ValueError)) -> Any:
    """Run ``parser`` on a file ``fetch`` returned and turn its format ``errors`` into a DownloadError
    naming the file; a file this run downloaded is deleted, so it is not trusted next time."""
    try:
        return parser(path)
    except errors as exc:
        if record["downloaded"]:
            path.unlink(missing_ok=True)
            fate = "It was deleted; rerun to download it again"
        else:
            fate = f"Delete {path} and rerun to download it again"
        if "note" in record:  # no pinned checksum to blame
            raise DownloadError(
                f"{path.name} (from {record['url']}, {record['algorithm']} {record['checksum']}) is not a readable "
                f"{what} ({type(exc).__name__}: {exc}); it is truncated or corrupted, or not the expected file. "
                f"{fate}, or place a good copy at {path}."
            ) from exc
        raise DownloadError(
            f"{path.name} (from {record['url']}) matches the expected {record['algorithm']} "
            f"{record['checksum']} but is not a readable {what} ({type(exc).__name__}: {exc}); "
            f"the archive is truncated or corrupted, or the checksum given for it is wrong. "
            f"{fate}, or place a verified copy at {path}."
        ) from exc
