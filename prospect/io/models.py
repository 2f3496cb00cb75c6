"""Site models on disk: skops files, never pickle.

:func:`save_model` writes a :class:`prospect.sites.learn.PUEnsemble` as a skops archive
(https://skops.readthedocs.io/en/stable/persistence.html) made byte-reproducible, and
:func:`load_model` reads one back, loading only the scikit-learn types prospect writes
(:data:`ALLOWED_TYPES`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline

from prospect.errors import FormatError, InputNotFoundError, OutputPathError
from prospect.io.writers import atomic_write
from prospect.sites.learn import PUEnsemble

__all__ = ["ALLOWED_TYPES", "load_model", "save_model"]

#: Every non-default type a saved :class:`PUEnsemble` contains; :func:`load_model` refuses others.
ALLOWED_TYPES = frozenset(
    {
        "sklearn._loss.link.Interval",
        "sklearn._loss.link.LogitLink",
        "sklearn._loss.loss.HalfBinomialLoss",
        "sklearn.calibration.CalibratedClassifierCV",
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
        "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.impute._base.SimpleImputer",
        "numpy.dtype",  # SimpleImputer keeps the dtype it was fitted on
        "sklearn.linear_model._logistic.LogisticRegression",
        "sklearn.pipeline.Pipeline",
        "sklearn.preprocessing._data.StandardScaler",
    }
)


def save_model(ens: PUEnsemble, path: str | os.PathLike[str]) -> None:
    """Write the ensemble as a skops file (a plain dict), atomically."""
    import skops.io as sio

    if not Path(path).parent.is_dir():
        raise OutputPathError(f"{path}: cannot write the model, directory {Path(path).parent} does not exist")
    data = sio.dumps({"members": list(ens.members), "feature_names": list(ens.feature_names), "info": dict(ens.info)})
    with atomic_write(path) as tmp:
        tmp.write_bytes(_reproducible_zip(data))


def _reproducible_zip(data: bytes) -> bytes:
    """A skops archive made byte-reproducible: skops names the array members after the
    objects' memory addresses (``id()``) and stamps the current time, so two dumps of the
    same model differ. Members are renamed in order of first mention in ``schema.json``
    (the names are rewritten there too), the ``__id__`` references renumbered in order of
    first mention, members sorted and dated 1980-01-01."""
    import io
    import re
    import zipfile

    src = zipfile.ZipFile(io.BytesIO(data))
    schema = src.read("schema.json").decode("utf-8")
    others = [n for n in src.namelist() if n != "schema.json"]
    order = sorted(others, key=lambda n: (schema.find(f'"{n}"') % (len(schema) + 1), n))
    rename = {old: f"{i:06d}{Path(old).suffix}" for i, old in enumerate(order)}
    if rename:
        schema = re.sub(
            "|".join(re.escape(f'"{n}"') for n in rename), lambda m: f'"{rename[m.group(0)[1:-1]]}"', schema
        )
    ids: dict[str, int] = {}  # object identities (memory addresses) become their order of first mention

    def renumber(m: re.Match) -> str:
        return f'"__id__": {ids.setdefault(m.group(1), len(ids) + 1)}'

    schema = re.sub(r'"__id__":\s*(\d+)', renumber, schema)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for name, content in [("schema.json", schema.encode("utf-8"))] + sorted(
            (rename[n], src.read(n)) for n in others
        ):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(info, content)
    return out.getvalue()


def load_model(path: str | os.PathLike[str]) -> PUEnsemble:
    """Read a :func:`save_model` file, refusing any type outside :data:`ALLOWED_TYPES`."""
    import skops.io as sio

    p = Path(path)
    if not p.is_file():
        raise InputNotFoundError(f"{p}: no such model file")
    try:
        untrusted = sio.get_untrusted_types(file=p)
    except Exception as exc:
        raise FormatError(
            f"{p}: not a skops model file ({type(exc).__name__}: {(str(exc).splitlines() or [''])[0]})"
        ) from None
    refused = sorted(set(untrusted) - ALLOWED_TYPES)
    if refused:
        raise FormatError(
            f"{p}: refusing to load type {refused[0]!r}, not one prospect writes ({len(refused)} disallowed type(s))"
        )
    try:
        obj = sio.load(p, trusted=list(untrusted))
    except Exception as exc:
        raise FormatError(
            f"{p}: unreadable skops model ({type(exc).__name__}: {(str(exc).splitlines() or [''])[0]})"
        ) from None
    kinds = (CalibratedClassifierCV, HistGradientBoostingClassifier, Pipeline)
    if not (
        isinstance(obj, Mapping)
        and {"members", "feature_names", "info"} <= set(obj)
        and len(obj["members"])
        and all(isinstance(m, kinds) for m in obj["members"])
    ):
        raise FormatError(f"{p}: not a prospect site model (expected a dict with members, feature_names, info)")
    return PUEnsemble(
        members=list(obj["members"]), feature_names=[str(c) for c in obj["feature_names"]], info=dict(obj["info"])
    )
