"""Datasets as uint8 NHWC arrays plus a manifest (sha256, split, labels).

``prepare(name, out_dir)`` writes ``train.npz``/``test.npz``/``manifest.json``;
``load_split(out_dir, split)`` reads one split back after checking its
sha256; ``to_tensor``/``from_tensor`` convert to and from NCHW floats in
[-1, 1].
"""

from .download import DownloadError
from .images import LocalDataError
from .registry import DATASETS, DatasetInfo, prepare
from .store import IntegrityError, load_split, read_manifest
from .transforms import from_tensor, to_tensor

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "DownloadError",
    "IntegrityError",
    "LocalDataError",
    "from_tensor",
    "load_split",
    "prepare",
    "read_manifest",
    "to_tensor",
]
