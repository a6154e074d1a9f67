"""``shiftattack verify CERT``: re-check a certificate against its model and data.

1. The file: JSON, schema, every field and type, the integrity digest, aggregate
   numbers that follow from the records (:func:`~.document.check_document`).
2. The inputs: the model is rebuilt from its spec and weights and the data reloaded
   from its spec; their sha256 fingerprints must equal the recorded ones. Each is found
   at its recorded absolute path when that exists (so a certificate verifies from any
   directory), else as written; ``model``, ``weights`` and ``data`` arguments point to
   moved files instead and are accepted only when their sha256 equal the recorded ones
   (:func:`locate_inputs`).
3. The claims, recomputed independently of the search that made them, for every
   image or a seeded random sample (``sample``): for an exact certificate, every
   member of the set is evaluated without early exit: a certified image must be
   correct under all of them with the recorded minimum margin and minimiser; an
   image not certified must be misclassified at its recorded shift; the recorded
   clean prediction and certified radius must agree. For a bound certificate the
   bounds are run again, and every certified box is also sampled densely on the real
   model (:mod:`.dense_check`), which does not trust the bounds.

Any mismatch raises :class:`~.document.CertificateError` naming the image and field.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from shiftattack.attacks import GridAttack
from shiftattack.certify.dense_check import check_boxes_densely
from shiftattack.certify.document import CertificateError, load_certificate
from shiftattack.certify.exact import certified_radius
from shiftattack.certify.methods import certify_chunk, smooth_config
from shiftattack.certify.smooth import certified_at, clopper_pearson_lower, smooth_certify
from shiftattack.data.loaders import resolved_data_spec
from shiftattack.errors import ModelError, ShiftAttackError, SpecError
from shiftattack.jobs.certify import config_from_document, load_inputs
from shiftattack.models.loading import file_sha256, model_source
from shiftattack.runtime.engine import ModelRunner, margins, resolve_device

__all__ = ["verify_certificate", "locate_inputs", "MARGIN_TOL"]

#: Margins recomputed in another batch composition differ by float rounding; beyond this they disagree.
MARGIN_TOL = 1e-3


def _close(a: float | None, b: float | None, scale: float = 1.0) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= MARGIN_TOL * max(1.0, abs(scale))


def _exists(kind: str, spec: str | None) -> bool:
    """Whether a recorded model spec, weights path or data spec can be found from here."""
    if not spec:
        return False
    if kind == "weights":
        return Path(spec).is_file()
    if kind == "model":
        source = model_source(spec)
        if source is not None:
            return source.is_file()
        return not spec.startswith("hf:") or Path(spec[3:]).is_dir()
    try:
        resolved_data_spec(spec)
    except ShiftAttackError:
        return False
    return True


def _moved(what: str, option: str, given: str, sha: str | None, recorded: str | None) -> None:
    if recorded is not None and sha != recorded:
        raise CertificateError(
            f"{option} {given} is not the {what} that was certified: its sha256 is {sha}, the "
            f"certificate's {recorded}; give the {what} the certificate was made with"
        )


def locate_inputs(cfg, doc: dict[str, Any], model: str | None = None, weights: str | None = None,
                  data: str | None = None) -> None:
    """Point ``cfg`` (rebuilt from ``doc``) at the files to verify against, in place.

    Without overrides each of model, weights and data is taken from its recorded absolute
    path when that exists, else as written in the certificate. An override is checked
    before anything is loaded where a file sha256 was recorded (the weights file, a
    ``file.py`` model's source); the data's pixel fingerprint is checked once loaded.

    Raises:
        CertificateError: an override's sha256 differs from the recorded one (exit 1).
        ModelError: ``weights`` names no file.
    """
    m, d = doc["model"], doc["data"]
    for kind, attr, resolved in (("model", "model", m.get("resolved_spec")),
                                 ("weights", "weights", m.get("weights_path")),
                                 ("data", "data", d.get("resolved_spec"))):
        if _exists(kind, resolved):
            setattr(cfg, attr, resolved)
    if weights is not None:
        if not Path(weights).is_file():
            raise ModelError(f"--weights: no such file: {weights}")
        if m.get("weights_sha256") is None:
            raise CertificateError(f"--weights {weights}: the certified model had no weights file "
                                   f"({m.get('spec')} with its own or random weights)")
        _moved("weights file", "--weights", weights, file_sha256(Path(weights)), m.get("weights_sha256"))
        cfg.weights, cfg.pretrained = weights, False  # a published file given where it is now
    if model is not None:
        source = model_source(model)
        if m.get("source_sha256") is not None:
            if source is None or not source.is_file():
                raise CertificateError(f"--model {model}: the certified model is the file "
                                       f"{m.get('spec')}; give that file where it is now (FILE.py:callable)")
            _moved("model file", "--model", model, file_sha256(source), m["source_sha256"])
        cfg.model = model
    if data is not None:
        cfg.data = data


def verify_certificate(
    path: str | Path,
    *,
    model: str | None = None,
    weights: str | None = None,
    data: str | None = None,
    sample: int | None = None,
    seed: int = 0,
    device: str = "auto",
    batch_size: int | None = None,
    progress: bool = False,
    trust_pickle: bool = False,
    dense_step: float = 1 / 16,
    dense_random: int = 64,
) -> dict[str, Any]:
    """Verify a certificate; return a small report, raise :class:`CertificateError` on any mismatch.

    ``trust_pickle`` lets the certified weights file be a pickled whole model (see ``certify``).
    ``model``, ``weights``, ``data``: where the certified files are now, when they moved
    (:func:`locate_inputs`; each must have the recorded sha256).
    For ``bound`` certificates every certified box is also sampled on a grid of step
    ``dense_step`` px plus ``dense_random`` seeded uniform draws (:mod:`.dense_check`).
    """
    if not (dense_step > 0 and math.isfinite(dense_step)) or dense_random < 0:
        raise SpecError(f"--dense-step must be a positive number of pixels and --dense-random >= 0, got "
                        f"{dense_step} and {dense_random}")
    doc = load_certificate(path)
    cfg = config_from_document(doc, device, trust_pickle)
    locate_inputs(cfg, doc, model, weights, data)
    if batch_size is not None:
        cfg.batch_size = batch_size
    inputs = load_inputs(cfg, progress)
    recorded_model, recorded_data = doc["model"], doc["data"]
    fp = inputs.fingerprints
    if recorded_model.get("weights_sha256") != fp["weights_sha256"]:
        raise CertificateError(
            f"the weights file {cfg.weights} is not the one certified: sha256 "
            f"{fp['weights_sha256']} != recorded {recorded_model.get('weights_sha256')}"
        )
    if recorded_model.get("state_sha256") != fp["state_sha256"]:
        raise CertificateError(
            "the model's parameters differ from the certified model's "
            f"(state sha256 {fp['state_sha256']} != {recorded_model.get('state_sha256')})"
        )
    if recorded_data.get("sha256") != fp["data_sha256"]:
        raise CertificateError(
            f"the data {cfg.data} differ from the certified data (sha256 of pixels, labels and indices "
            f"{fp['data_sha256']} != recorded {recorded_data.get('sha256')})"
            + ("; --data must give the data that was certified" if data is not None else "")
        )
    if json.loads(json.dumps(inputs.threat.to_json())) != doc["threat"]:
        raise CertificateError(
            f"the threat recorded ({doc['threat']}) does not rebuild as recorded ({inputs.threat.to_json()})"
        )
    records = doc["images"]
    if len(records) != len(inputs.data):
        raise CertificateError(
            f"the certificate has {len(records)} records but the data {len(inputs.data)} images"
        )
    by_index = {int(i): k for k, i in enumerate(inputs.data.indices.tolist())}
    positions = []
    for rec in records:
        if rec["index"] not in by_index:
            raise CertificateError(f"image index {rec['index']} is not in the data")
        positions.append(by_index[rec["index"]])
    chosen = list(range(len(records)))
    if sample is not None and sample < len(records):
        g = torch.Generator().manual_seed(seed)
        chosen = sorted(torch.randperm(len(records), generator=g)[:sample].tolist())
    # check_document has already restricted the method to exact, bound or smooth
    check = {"exact": _verify_exact, "bound": _verify_bound, "smooth": _verify_smooth}[doc["method"]["name"]]
    check(doc, inputs, cfg, [records[k] for k in chosen], [positions[k] for k in chosen], device, progress)
    report: dict[str, Any] = {}
    if doc["method"]["name"] == "bound":
        pos = torch.tensor([positions[k] for k in chosen], dtype=torch.long)
        report["n_dense_samples"] = check_boxes_densely(
            inputs.model, inputs.images[pos], inputs.data.labels[pos], [records[k] for k in chosen],
            doc["threat"], device=resolve_device(device), step=dense_step, n_random=dense_random,
            seed=seed, batch_size=cfg.batch_size,
        )
    return {
        **report,
        "n_checked": len(chosen),
        "n_images": len(records),
        "method": doc["method"]["name"],
        "certified_accuracy": doc["certified_accuracy"],
    }


def _verify_exact(doc, inputs, cfg, records, positions, device, progress) -> None:
    pos = torch.tensor(positions, dtype=torch.long)
    images, labels = inputs.images[pos], inputs.data.labels[pos]
    runner = ModelRunner(inputs.model, resolve_device(device), images.dtype, precision=cfg.precision)
    # every member, no early exit, rings outwards: exact minimum margin and smallest failing radius
    full = GridAttack(inputs.threat, batch_size=cfg.batch_size, early_exit=False, order="radius")(
        runner, images, labels, progress=progress
    )
    radius = certified_radius(full)
    for k, rec in enumerate(records):
        where = f"image {rec['index']}"
        if rec["label"] != int(labels[k]):
            raise CertificateError(f"{where}: label {rec['label']} recorded, {int(labels[k])} in the data")
        if rec["clean_pred"] != int(full.clean_pred[k]):
            raise CertificateError(
                f"{where}: clean prediction {rec['clean_pred']} recorded, "
                f"{int(full.clean_pred[k])} recomputed"
            )
        if rec["certified"] != bool(full.robust[k]) or rec["robust"] != bool(full.robust[k]):
            raise CertificateError(
                f"{where}: certified={rec['certified']} recorded, but evaluating every "
                f"member gives {bool(full.robust[k])}"
            )
        if "certified_radius" in rec and radius is not None and rec["certified_radius"] != radius[k]:
            raise CertificateError(
                f"{where}: certified radius {rec['certified_radius']} recorded, {radius[k]} recomputed"
            )
        if rec["certified"] and not _close(rec["worst_margin"], float(full.worst_margin[k])):
            raise CertificateError(
                f"{where}: minimum margin {rec['worst_margin']} recorded, "
                f"{float(full.worst_margin[k]):.6g} recomputed over every member"
            )
    # each recorded shift, evaluated on its own: failures must fail, minimisers must reach the minimum
    params = torch.zeros(len(records), 3, dtype=torch.float64)
    for k, rec in enumerate(records):
        shift = list(rec["worst_shift"]) + [0.0] * (3 - len(rec["worst_shift"]))
        if len(shift) != 3 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in shift):
            raise CertificateError(f"image {rec['index']}: worst_shift {rec['worst_shift']} is not a shift")
        params[k] = torch.tensor(shift, dtype=torch.float64)
    out = []
    for s in range(0, len(records), cfg.batch_size):
        idx = torch.arange(s, min(s + cfg.batch_size, len(records)))
        x = inputs.threat.apply_to(images, idx, params[idx])
        out.append(margins(runner(x), labels[idx].to(runner.device)).double().cpu())
    at_shift = torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)
    for k, rec in enumerate(records):
        where = f"image {rec['index']} at shift {rec['worst_shift']}"
        m = float(at_shift[k])
        if not rec["certified"] and m >= 0:
            raise CertificateError(f"{where}: recorded as a failure, but the margin there is {m:.6g} >= 0")
        if not _close(rec["worst_margin"], m):
            raise CertificateError(f"{where}: margin {rec['worst_margin']} recorded, {m:.6g} recomputed")


def _verify_smooth(doc, inputs, cfg, records, positions, device, progress) -> None:
    """Redraw every sample with the recorded seed: counts must agree exactly, and p_lower, the
    radius, the smoothed prediction and the certified flag must follow from them; the clean
    prediction must be the base model's on the unshifted image."""
    from scipy.stats import norm

    scfg = smooth_config(cfg)
    pos = torch.tensor(positions, dtype=torch.long)
    rows = smooth_certify(
        inputs.model,
        inputs.images[pos],
        inputs.data.labels[pos],
        inputs.data.indices[pos],
        scfg,
        device=resolve_device(device),
        batch_size=cfg.batch_size,
        progress=progress,
        precision=cfg.precision,
    )
    for rec, row in zip(records, rows, strict=True):
        where = f"image {rec['index']}"
        for key in ("top_class", "n_top"):
            if rec.get(key) != row[key]:
                raise CertificateError(
                    f"{where}: {key} {rec.get(key)} recorded, {row[key]} when the recorded "
                    "seed's samples are drawn again"
                )
        p_lower = clopper_pearson_lower(rec["n_top"], scfg.n, scfg.alpha)
        if not _close(rec.get("p_lower"), p_lower, 0.0):
            raise CertificateError(
                f"{where}: p_lower {rec.get('p_lower')} recorded, {p_lower:.6g} from its counts"
            )
        radius = None if p_lower < 0.5 else scfg.sigma * float(norm.ppf(p_lower))
        prediction = -1 if radius is None else rec["top_class"]
        if rec["smoothed_pred"] != prediction or not _close(rec.get("radius"), radius):
            raise CertificateError(
                f"{where}: smoothed prediction {rec['smoothed_pred']} / radius {rec.get('radius')} "
                f"recorded, {prediction} / {radius} from its counts"
            )
        if rec["clean_pred"] != row["base_pred"]:
            raise CertificateError(
                f"{where}: clean prediction {rec['clean_pred']} recorded, {row['base_pred']} recomputed"
            )
        ok = certified_at(prediction, rec["label"], radius, doc["threat"]["l2_radius"])
        if rec["certified"] != ok:
            raise CertificateError(f"{where}: certified={rec['certified']} recorded, {ok} from its counts")


def _verify_bound(doc, inputs, cfg, records, positions, device, progress) -> None:
    """Run the bounds again on the chosen images (deterministic): every status and flag must agree;
    every recorded failure must misclassify at its recorded (sub-pixel) shift."""
    from shiftattack.shifts.functional import shift_bilinear

    pos = torch.tensor(positions, dtype=torch.long)
    images, labels = inputs.images[pos], inputs.data.labels[pos]
    again = certify_chunk(
        cfg,
        inputs.model,
        images,
        labels,
        inputs.data.indices[pos],
        inputs.threat,
        resolve_device(device),
        progress,
    )
    threat = doc["threat"]
    runner = ModelRunner(inputs.model, resolve_device(device), images.dtype)
    for k, (rec, new) in enumerate(zip(records, again, strict=True)):
        where = f"image {rec['index']}"
        for key in ("clean_pred", "certified", "robust", "status", "certified_radius"):
            if rec.get(key) != new[key]:
                raise CertificateError(f"{where}: {key} {rec.get(key)!r} recorded, {new[key]!r} recomputed")
        if rec["certified"] and not _close(rec.get("margin_lower_bound"), new["margin_lower_bound"]):
            raise CertificateError(
                f"{where}: margin lower bound {rec.get('margin_lower_bound')} recorded, "
                f"{new['margin_lower_bound']} recomputed"
            )
        if rec["clean_pred"] == rec["label"] and not rec["robust"]:
            dx, dy = (float(v) for v in rec["worst_shift"][:2])
            if max(abs(dx), abs(dy)) > threat["radius"]:
                raise CertificateError(f"{where}: recorded shift {rec['worst_shift']} lies outside the box")
            x = shift_bilinear(images[k : k + 1], dx, dy, threat["mode"], threat.get("fill", 0.0))
            m = float(margins(runner(x), labels[k : k + 1].to(runner.device))[0])
            if m >= 0:
                raise CertificateError(
                    f"{where}: recorded as fooled at {rec['worst_shift']}, but the margin "
                    f"there is {m:.6g} >= 0"
                )
