"""Plain-text summary tables printed by the command line, read from a results document."""

from __future__ import annotations

__all__ = ["attack_summary", "benchmark_summary", "certificate_summary", "timing_lines"]


def _pct(value: float | None) -> str:
    return "   n/a" if value is None else f"{100 * value:6.2f}%"


def timing_lines(timing: dict | None) -> list[str]:
    """After ``--resume``: what this command computed and what the whole run did (``timing.json``),
    each labelled; nothing for a run that one command did."""
    if timing is None or not timing["this_command"]["units_read_back"]:
        return []  # one command did everything: the forward-passes line says it
    now, run = timing["this_command"], timing["whole_run"]
    line = (f"  this command        {now['n_evaluated']:>8d} forward passes in {now['wall_seconds']:.2f} s"
            f"  ({now['forward_passes_per_second']:,.0f} per s, loading included)")
    rate = run["forward_passes_per_second"]
    return [
        f"  resumed             {now['units_read_back']} of {run['units']} units read back, "
        f"{now['units_computed']} computed now",
        line,
        f"  whole run           {run['n_evaluated']:>8d} forward passes in {run['unit_seconds_summed']:.2f} s "
        "summed over units" + ("" if rate is None else f"  ({rate:,.0f} per s)")
        + (f"; {run['units_without_timing']} units untimed" if run["units_without_timing"] else ""),
    ]


def precision_lines(doc: dict) -> list[str]:
    """One line naming the precision when a document's model ran at reduced precision, else none."""
    p = doc.get("precision") or {}
    if p.get("name", "fp32") == "fp32":
        return []
    return [f"  precision {p['name']}: every figure is {p['claim']}"]


def attack_summary(doc: dict, seconds: float | None = None, timing: dict | None = None) -> str:
    """A small table from an attack ``results.json`` document (never recomputed).

    ``seconds``: the command's wall time, shown beside the forward passes; ``timing``
    (``timing.json``) replaces it with this command's and, after ``--resume``, the whole
    run's figures, each labelled.
    """
    threat = doc["threat"]
    attack = doc["attack"]
    lines = [
        f"attack {attack['name']} ({'exact over the set' if attack.get('exact') else 'heuristic'})"
        f" | shifts {threat['spec']} ({threat['n_shifts']} per image) | mode {threat['mode']}"
        f" | interpolation {threat['interpolation']}"
        + (f" | crop {threat['crop_size'][0]}x{threat['crop_size'][1]} px" if threat.get("crop_size") else ""),
        *precision_lines(doc),
        f"  images              {doc['n_images']:>8d}",
        f"  clean accuracy      {_pct(doc['clean_accuracy'])}",
        f"  worst-case accuracy {_pct(doc['worst_case_accuracy'])}",
    ]
    resumed = timing_lines(timing)
    lines += [
        f"  forward passes      {doc['n_evaluated']:>8d}" + ("" if seconds is None or resumed else
            f"  in {seconds:.2f} s  ({doc['n_evaluated'] / max(seconds, 1e-9):,.0f} per s)"),
        *resumed,
    ]
    curve = doc.get("accuracy_vs_radius")
    if curve:
        lines.append("  worst-case accuracy by radius:")
        for row in curve:
            lines.append(f"    K <= {row['radius']:g}  {_pct(row['worst_case_accuracy'])}")
    return "\n".join(lines)


def _num(value: float | None, pct: bool = True) -> str:
    if value is None:
        return "   n/a"
    return f"{100 * value:6.2f}%" if pct else f"{value:7.3f}"


def benchmark_summary(doc: dict) -> str:
    """A table from a benchmark ``results.json`` document (never recomputed)."""
    norm = doc["normalizer"]
    lines = [f"{doc['suite']} | model {doc['model']['spec']} | source {doc['data']['source']} | "
             f"normaliser: {norm['name']}", *precision_lines(doc)]
    if "corruptions" in doc:
        lines.append(f"  clean error {_num(doc['clean_error'])} on {doc['n_images']} images")
        lines.append(f"  {'corruption':<18} {'mean err':>8} {'CE':>8} {'rel CE':>8}   errors by severity")
        for name, r in doc["corruptions"].items():
            errs = " ".join(f"{100 * e:5.1f}" for e in r["errors"])
            mark = " (held out)" if r["held_out"] else ""
            lines.append(f"  {name:<18} {_num(r['mean_error'])} {_num(r['ce'])} {_num(r['relative_ce'])}   "
                         f"{errs}{mark}")
        lines.append(f"  mCE {_num(doc['mce'])}   relative mCE {_num(doc['relative_mce'])}   "
                     f"mean error {_num(doc['mean_error'])}"
                     + (f"   (mCE needs {', '.join(doc['mce_missing'])})" if doc["mce_missing"] else ""))
    else:
        lines.append(f"  difficulty {doc['difficulty']}")
        missing = f"   (needs {', '.join(doc['mfr_missing'])})" if doc["mfr_missing"] else ""
        if norm["name"] == "none":  # no normaliser: FR = FP and T5D = uT5D, shown once, unscaled
            lines.append(f"  {'perturbation':<16} {'FP':>8} {'uT5D':>8}")
            for name, r in doc["perturbations"].items():
                mark = " (held out)" if r["held_out"] else ""
                lines.append(f"  {name:<16} {_num(r['fp'])} {_num(r['ut5d'], False)}{mark}")
            lines.append(f"  mFR (mean FP) {_num(doc['mfr'])}   mT5D (mean uT5D) {_num(doc['mt5d'], False)}"
                         + missing)
            return "\n".join(lines)
        lines.append(f"  {'perturbation':<16} {'FP':>8} {'FR':>8} {'uT5D':>8} {'T5D':>8}")
        for name, r in doc["perturbations"].items():
            mark = " (held out)" if r["held_out"] else ""
            lines.append(f"  {name:<16} {_num(r['fp'])} {_num(r['fr'])} {_num(r['ut5d'], False)} "
                         f"{_num(r['t5d'])}{mark}")
        lines.append(f"  mFR {_num(doc['mfr'])}   mT5D {_num(doc['mt5d'])}" + missing)
    return "\n".join(lines)


def certificate_summary(doc: dict) -> str:
    """A small table from a ``certificate.json`` document (never recomputed)."""
    threat, method = doc["threat"], doc["method"]
    lines = [
        f"certificate {method['name']} | shifts {threat['spec']} | mode {threat['mode']}"
        f" | interpolation {threat['interpolation']}"
        + (f" | crop {threat['crop_size'][0]}x{threat['crop_size'][1]} px" if threat.get("crop_size") else ""),
        *precision_lines(doc),
        f"  images              {doc['n_images']:>8d}",
        f"  clean accuracy      {_pct(doc['clean_accuracy'])}",
        f"  certified accuracy  {_pct(doc['certified_accuracy'])}",
    ]
    if doc.get("smoothed_accuracy") is not None:
        lines.insert(3 + len(precision_lines(doc)), f"  smoothed accuracy   {_pct(doc['smoothed_accuracy'])}")
    if doc.get("worst_case_accuracy") is not None:
        lines.append(f"  attack (same set)   {_pct(doc['worst_case_accuracy'])}  "
                     f"gap {100 * (doc['worst_case_accuracy'] - doc['certified_accuracy']):.2f} points")
    curve = doc.get("certified_accuracy_vs_radius")
    if curve:
        lines.append("  certified accuracy by radius:")
        for row in curve:
            lines.append(f"    r <= {row['radius']:g}  {_pct(row['certified_accuracy'])}")
    return "\n".join(lines)
