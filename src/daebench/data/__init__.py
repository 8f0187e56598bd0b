"""Datasets as uint8 NHWC arrays plus a manifest (sha256, split, labels).

``download(name)`` fetches a dataset's source files (the network step) and
``prepare(name, out_dir)`` writes ``train.npz``/``test.npz``/``manifest.json``;
``load_split(out_dir, split)`` reads one split back after checking its
sha256 (``mmap=True``: memory-mapped); ``to_tensor``/``from_tensor`` convert to and from NCHW
floats in [-1, 1]; ``UInt8Images`` serves a uint8 set as float batches, converted on the device.
"""

from .download import DownloadError
from .images import LocalDataError
from .registry import DATASETS, DatasetInfo, download, needs_download, prepare
from .store import IntegrityError, load_split, read_manifest
from .transforms import UInt8Images, from_tensor, to_tensor

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "DownloadError",
    "IntegrityError",
    "LocalDataError",
    "UInt8Images",
    "download",
    "from_tensor",
    "load_split",
    "needs_download",
    "prepare",
    "read_manifest",
    "to_tensor",
]
