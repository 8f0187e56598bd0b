"""Evaluation of the tractable latent z (DBAE §4.1, §4.3, App. C.2).

Linear probe (Table 1): a linear model on standardised z fitted on the train split, scored on the
test split -- multi-label average precision (mean over binary attributes), class accuracy and
one-vs-rest macro AUROC, and Pearson r / MSE of a linear regressor on standardised continuous
attributes (mean over attributes). Per class and per attribute it also gives the AUROCs of the
two-phase DAE paper's Tables 10 / 11 (supp. §11).

TAD / ATTRS (Table 3; Yeats et al. 2022, as run by InfoDiffusion and DBAE): for each binary
attribute and latent dimension the AUROC of the raw dimension as a score (taking the better sign);
an attribute counts as captured when its best dimension reaches AUROC >= 0.75 and no other attribute
explains more than 20 % of its entropy (max_j I(a_i; a_j) / H(a_i) <= 0.2); TAD sums, over captured
attributes, the gap between the best and second-best dimension's AUROC; ATTRS counts them.
Reported as the mean over the 5 folds' training parts of a shuffled KFold (random_state 0),
standardised per fold, as in the reference evaluation.
"""
from __future__ import annotations

import numpy as np
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import KFold
from sklearn.preprocessing import StandardScaler


def linear_probe(z_train: np.ndarray, z_test: np.ndarray, y_train: np.ndarray, y_test: np.ndarray,
                 bin_train: dict[str, np.ndarray], bin_test: dict[str, np.ndarray],
                 cont_train: dict[str, np.ndarray], cont_test: dict[str, np.ndarray]) -> dict:
    sc = StandardScaler().fit(z_train)
    a, b = sc.transform(z_train), sc.transform(z_test)
    clf = LogisticRegression(max_iter=5000).fit(a, y_train)
    proba = clf.predict_proba(b)
    out = {"class_accuracy": float((clf.predict(b) == y_test).mean()),
           "class_auroc": float(roc_auc_score(y_test, proba, multi_class="ovr", average="macro", labels=clf.classes_)),
           # two-phase paper Table 11: each class's one-vs-rest AUROC of the multi-class probe's probabilities
           "per_class_auroc": {str(c): float(roc_auc_score(y_test == c, proba[:, i]))
                               for i, c in enumerate(clf.classes_)}}
    aps, aurocs = {}, {}
    for name, target in bin_train.items():
        m = LogisticRegression(max_iter=5000).fit(a, target)
        score = m.predict_proba(b)[:, 1]
        aps[name] = float(average_precision_score(bin_test[name], score))
        aurocs[name] = float(roc_auc_score(bin_test[name], score))  # two-phase paper Table 10: one probe per attribute
    out["ap"] = float(np.mean(list(aps.values())))
    rs, mses = {}, {}
    for name in cont_train:
        ts = StandardScaler().fit(cont_train[name][:, None])
        yt, ye = ts.transform(cont_train[name][:, None])[:, 0], ts.transform(cont_test[name][:, None])[:, 0]
        pred = LinearRegression().fit(a, yt).predict(b)
        rs[name] = float(np.corrcoef(pred, ye)[0, 1])
        mses[name] = float(np.mean((pred - ye) ** 2))
    out.update(pearson_r=float(np.mean(list(rs.values()))), mse=float(np.mean(list(mses.values()))),
               per_attribute={"ap": aps, "auroc": aurocs, "pearson_r": rs, "mse": mses})
    return out


def dimension_aurocs(z: np.ndarray, attrs: np.ndarray) -> np.ndarray:
    """[A, D] AUROC of each dimension as a detector of each binary attribute, sign-free."""
    out = np.full((attrs.shape[1], z.shape[1]), 0.5)
    for i in range(attrs.shape[1]):
        if attrs[:, i].min() == attrs[:, i].max():
            continue
        for j in range(z.shape[1]):
            auc = roc_auc_score(attrs[:, i], z[:, j])
            out[i, j] = max(auc, 1.0 - auc)
    return out


def entropy_reduction(attrs: np.ndarray) -> np.ndarray:
    """[A] max over other attributes j of I(a_i; a_j) / H(a_i) for binary attributes."""
    n_attr = attrs.shape[1]
    mi = np.zeros((n_attr, n_attr))
    for i in range(n_attr):
        for j in range(n_attr):
            for u in (0, 1):
                for v in (0, 1):
                    pj = np.mean((attrs[:, i] == u) & (attrs[:, j] == v))
                    pu, pv = np.mean(attrs[:, i] == u), np.mean(attrs[:, j] == v)
                    if pj > 0:
                        mi[i, j] += pj * np.log(pj / (pu * pv))
    h = np.diag(mi).copy()
    off = mi * (1 - np.eye(n_attr))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(h > 0, off.max(axis=1) / h, 1.0)


def tad_score(z: np.ndarray, attrs: np.ndarray, auroc_threshold: float = 0.75,
              entropy_threshold: float = 0.2) -> tuple[float, int]:
    aur = dimension_aurocs(z, attrs)
    best = aur.max(axis=1)
    second = np.sort(aur, axis=1)[:, -2] if aur.shape[1] > 1 else np.full(len(best), 0.5)
    keep = (best >= auroc_threshold) & (entropy_reduction(attrs) <= entropy_threshold)
    return float((best - second)[keep].sum()), int(keep.sum())


def tad(z: np.ndarray, attrs: dict[str, np.ndarray], folds: int = 5) -> dict:
    names = sorted(attrs)
    y = np.stack([attrs[k] for k in names], axis=1)
    scores, counts = [], []
    for train_idx, _ in KFold(n_splits=folds, shuffle=True, random_state=0).split(z):
        zt = StandardScaler().fit_transform(z[train_idx])
        s, c = tad_score(zt, y[train_idx])
        scores.append(s)
        counts.append(c)
    return {"tad": float(np.mean(scores)), "attrs": float(np.mean(counts)), "tad_std": float(np.std(scores)),
            "attributes": names, "entropy_reduction": dict(zip(names, entropy_reduction(y).round(4).tolist()))}
