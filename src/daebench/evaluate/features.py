"""The feature-based metrics of the metrics tables, re-exported in one place.

The metrics themselves live by job: LPIPS in perceptual.py, the two FID protocols (torch-fidelity and
clean-fid) in fid.py, the domain classifier in domain_classifier.py and the substitutes measured in its
features (``fd_domain``, ``featdist_domain``, used when the pretrained weights are absent) in
domain_numpy.py, the accepted image formats in image_format.py, what each column means
(``COLUMN_DESCRIPTIONS``) and the protocol recorded next to every table (``protocol_info``) in protocol.py.
Their public functions are re-exported here, where the jobs call them (``features.lpips_distance``,
``features.train_classifier``, ...); the scoring job imports its numpy modules directly, without torch.

No metric downloads anything: LPIPS/FID load their pretrained files from ``weights_dir`` (see
weights.py) and raise WeightsMissing otherwise.
"""

from __future__ import annotations

from daebench.evaluate.domain_classifier import (
    domain_features,
    feature_distance_domain,
    frechet_distance_domain,
    load_classifier,
    save_classifier,
    train_classifier,
)
from daebench.evaluate.fid import fid_cf, fid_tf
from daebench.evaluate.image_format import to_float_nchw, to_uint8_nhwc
from daebench.evaluate.perceptual import lpips_distance
from daebench.evaluate.protocol import COLUMN_DESCRIPTIONS, protocol_info
from daebench.evaluate.weights import WeightsMissing

__all__ = [
    "COLUMN_DESCRIPTIONS",
    "WeightsMissing",
    "domain_features",
    "feature_distance_domain",
    "fid_cf",
    "fid_tf",
    "frechet_distance_domain",
    "load_classifier",
    "lpips_distance",
    "protocol_info",
    "save_classifier",
    "to_float_nchw",
    "to_uint8_nhwc",
    "train_classifier",
]
