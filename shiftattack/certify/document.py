"""The ``certificate.json`` document: fingerprints, sealing, loading and checking.

A certificate is one JSON document (DESIGN.md): the per-image records of the
attack contract plus ``certified``, ``certified_accuracy``, the threat set, the
method and its parameters, sha256 fingerprints of the model (weights file and
parameters) and of the data (pixels, labels, indices), tool and torch versions,
device and dtype. ``clean_pred`` is always the model's own top-1 on the unshifted
image; a ``smooth`` certificate, whose claim is about the smoothed classifier, adds
its prediction per image (``smoothed_pred``, -1 = abstain) and ``smoothed_accuracy``.
:func:`seal` adds ``integrity.sha256``, a digest of the rest
of the document in canonical form, so that an edit made after the file was
written is detected by :func:`load_certificate` even before anything is
recomputed (a digest is an integrity check, not a signature: whoever edits the
file can recompute it, which is why ``verify`` also recomputes).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from shiftattack.errors import ShiftAttackError
from shiftattack.runtime.results import _clean

__all__ = [
    "SCHEMA",
    "METHODS",
    "CertificateError",
    "state_sha256",
    "canonical_sha256",
    "seal",
    "load_certificate",
    "check_document",
]

SCHEMA = "shiftattack.certificate/v1"
METHODS = ("exact", "bound", "smooth")

_TOP = {
    "schema": str,
    "method": dict,
    "certified_accuracy": (float, int),
    "clean_accuracy": (float, int),
    "n_images": int,
    "threat": dict,
    "model": dict,
    "data": dict,
    "versions": dict,
    "device": str,
    "dtype": str,
    "images": list,
    "integrity": dict,
}
_IMAGE = {
    "index": int,
    "label": int,
    "clean_pred": int,
    "robust": bool,
    "certified": bool,
    "worst_shift": list,
    "worst_margin": (float, int, type(None)),
    "n_evaluated": int,
}


class CertificateError(ShiftAttackError):
    """A certificate file is malformed, was edited, or does not match its model or data."""


def state_sha256(model: nn.Module) -> str:
    """sha256 of a model's ``state_dict``: every name, dtype, shape and the raw bytes, in key order."""
    h = hashlib.sha256(b"shiftattack.state_dict/v1\n")
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name} {t.dtype} {tuple(t.shape)}\n".encode())
        if t.numel():
            h.update(
                memoryview(t.view(torch.uint8).numpy() if t.dtype == torch.bfloat16 else t.numpy()).cast("B")
            )
    return h.hexdigest()


def canonical_sha256(doc: dict[str, Any]) -> str:
    """sha256 of ``doc`` without its ``integrity`` field, as sorted compact JSON (NaN/Inf as null)."""
    body = {k: v for k, v in doc.items() if k != "integrity"}
    text = json.dumps(_clean(body), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def seal(doc: dict[str, Any]) -> dict[str, Any]:
    """Return ``doc`` with ``schema`` and ``integrity = {"sha256": canonical_sha256(doc)}``."""
    out = {"schema": SCHEMA, **{k: v for k, v in doc.items() if k not in ("schema", "integrity")}}
    out["integrity"] = {"sha256": canonical_sha256(out)}
    return out


def _type_name(t: type | tuple) -> str:
    types = t if isinstance(t, tuple) else (t,)
    return " or ".join("null" if x is type(None) else x.__name__ for x in types)


def _check_fields(obj: dict, spec: dict, where: str) -> None:
    for key, typ in spec.items():
        if key not in obj:
            raise CertificateError(f"{where} has no {key!r} field")
        value = obj[key]
        bad_bool = isinstance(value, bool) and typ in (int, (float, int))
        if bad_bool or not isinstance(value, typ):
            raise CertificateError(
                f"{where} field {key!r} must be {_type_name(typ)}, got {type(value).__name__} {value!r:.60}"
            )


def check_document(doc: Any) -> dict[str, Any]:
    """Check the structure and internal consistency of a certificate document.

    Raises:
        CertificateError: naming the first problem (missing or mistyped field,
            wrong schema, integrity digest mismatch, aggregate numbers that do not
            follow from the per-image records).
    """
    if not isinstance(doc, dict):
        raise CertificateError(f"a certificate is a JSON object, got {type(doc).__name__}")
    _check_fields(doc, _TOP, "certificate")
    if doc["schema"] != SCHEMA:
        raise CertificateError(f"unsupported certificate schema {doc['schema']!r}; expected {SCHEMA!r}")
    if doc["method"].get("name") not in METHODS:
        raise CertificateError(f"unknown method {doc['method'].get('name')!r}; expected one of {METHODS}")
    digest = doc["integrity"].get("sha256")
    if digest != canonical_sha256(doc):
        raise CertificateError(
            "the certificate was modified after it was written: its integrity "
            "sha256 does not match its content"
        )
    images = doc["images"]
    smooth = doc["method"]["name"] == "smooth"  # certified is about the smoothed prediction
    pred = "smoothed_pred" if smooth else "clean_pred"
    for k, rec in enumerate(images):
        if not isinstance(rec, dict):
            raise CertificateError(f"images[{k}] must be an object")
        _check_fields(rec, {**_IMAGE, pred: int}, f"images[{k}]")
        if rec["certified"] and rec[pred] != rec["label"]:
            what = "the smoothed classifier's prediction is wrong" if smooth else "misclassified unshifted"
            raise CertificateError(f"images[{k}] is marked certified but {what}")
    n = len(images)
    if doc["n_images"] != n:
        raise CertificateError(f"n_images is {doc['n_images']} but there are {n} image records")
    if len({rec["index"] for rec in images}) != n:
        raise CertificateError("image indices repeat")
    if n:
        acc = sum(rec["certified"] for rec in images) / n
        clean = sum(rec["clean_pred"] == rec["label"] for rec in images) / n
        if not math.isclose(doc["certified_accuracy"], acc, rel_tol=0, abs_tol=1e-12):
            raise CertificateError(
                f"certified_accuracy is {doc['certified_accuracy']} but the records give {acc}"
            )
        if not math.isclose(doc["clean_accuracy"], clean, rel_tol=0, abs_tol=1e-12):
            raise CertificateError(f"clean_accuracy is {doc['clean_accuracy']} but the records give {clean}")
        smoothed = sum(rec["smoothed_pred"] == rec["label"] for rec in images) / n if smooth else None
        if smooth and not (isinstance(doc.get("smoothed_accuracy"), float | int)
                           and math.isclose(doc["smoothed_accuracy"], smoothed, rel_tol=0, abs_tol=1e-12)):
            raise CertificateError(
                f"smoothed_accuracy is {doc.get('smoothed_accuracy')} but the records give {smoothed}")
    return doc


def load_certificate(path: str | Path) -> dict[str, Any]:
    """Read and check a ``certificate.json`` (a folder holding one is accepted too)."""
    p = Path(path)
    if p.is_dir():
        p = p / "certificate.json"
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise CertificateError(f"cannot read certificate {p}: {exc.strerror or exc}") from None
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CertificateError(f"{p} is not valid JSON: {exc}") from None
    return check_document(doc)
