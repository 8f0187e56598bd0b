"""Read a file written by ``torch.save`` into numpy arrays, without importing torch.

A scoring job that needs only the domain classifier's weights (domain_numpy.py) would otherwise pay for
``import torch`` (over a second on a 2-core machine) to read a few hundred kilobytes. The format is torch's
zip serialisation (the default since torch 1.6): ``<root>/data.pkl`` pickles the object with every storage
replaced by a persistent id ``('storage', <torch.XStorage>, key, location, numel)`` whose bytes lie in
``<root>/data/<key>``; a tensor is ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``.

Like ``torch.load(weights_only=True)``, the unpickler resolves only the names a tensor dictionary needs
(``collections.OrderedDict``, the storage classes, the tensor rebuild function) and refuses any other
global, so a file cannot run code. Only little-endian files are read (what torch writes on x86 and ARM).
"""
from __future__ import annotations

import collections
import os
import pickle
import zipfile
from typing import Any

import numpy as np

__all__ = ["read_tensors"]

# torch.<Name>Storage -> numpy dtype (bfloat16 has no numpy dtype: read as float32, exactly)
STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16", "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class _Storage:
    def __init__(self, data: np.ndarray):
        self.data = data


def _bfloat16_to_float32(raw: bytes) -> np.ndarray:
    # bfloat16 is the top half of a float32: widening is exact
    return (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)


def _rebuild_tensor_v2(storage: _Storage, offset: int, size: tuple, stride: tuple, *_ignored) -> np.ndarray:
    data = storage.data
    if not size:
        return data[offset].copy()
    view = np.lib.stride_tricks.as_strided(data[offset:], shape=tuple(size),
                                           strides=tuple(s * data.itemsize for s in stride))
    return np.array(view)  # own the memory: the storage buffer belongs to the zip read


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, archive: zipfile.ZipFile, root: str, path: str):
        super().__init__(file)
        self.archive, self.root, self.path = archive, root, path
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in STORAGE_DTYPES:
            return name
        raise pickle.UnpicklingError(f"{self.path}: refusing to load {module}.{name} (not a plain tensor "
                                     f"dictionary; load it with torch.load)")

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"{self.path}: unknown persistent id {pid!r}")
        _, dtype_name, key, _location, _numel = pid
        if key not in self.storages:
            raw = self.archive.read(f"{self.root}/data/{key}")
            dtype = STORAGE_DTYPES[dtype_name]
            data = _bfloat16_to_float32(raw) if dtype == "bfloat16" else np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))
            self.storages[key] = _Storage(data)
        return self.storages[key]


def read_tensors(path: str | os.PathLike) -> Any:
    """The object ``torch.save`` wrote to ``path`` (dicts, lists and scalars as they were), every tensor a
    numpy array of its dtype. Raises ValueError for a file that is not torch's zip format or is big-endian,
    pickle.UnpicklingError for one that holds anything but tensors and plain containers."""
    path = os.fspath(path)
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a torch zip checkpoint (written by torch < 1.6 or not by torch.save)")
    with zipfile.ZipFile(path) as archive:
        pkl = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise ValueError(f"{path}: not a torch zip checkpoint (no single <root>/data.pkl)")
        root = pkl[0].split("/", 1)[0]
        if f"{root}/byteorder" in archive.namelist() and archive.read(f"{root}/byteorder").strip() != b"little":
            raise ValueError(f"{path}: a big-endian checkpoint; load it with torch.load")
        with archive.open(pkl[0]) as f:
            return _Unpickler(f, archive, root, path).load()
