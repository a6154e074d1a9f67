"""Plain-text summary tables printed by the command line, read from a results document."""

from __future__ import annotations

__all__ = ["attack_summary"]


def _pct(value: float | None) -> str:
    return "   n/a" if value is None else f"{100 * value:6.2f}%"


def attack_summary(doc: dict) -> str:
    """A small table from an attack ``results.json`` document (never recomputed)."""
    threat = doc["threat"]
    attack = doc["attack"]
    lines = [
        f"attack {attack['name']} ({'exact over the set' if attack.get('exact') else 'heuristic'})"
        f" | shifts {threat['spec']} ({threat['n_shifts']} per image) | mode {threat['mode']}"
        f" | interpolation {threat['interpolation']}",
        f"  images              {doc['n_images']:>8d}",
        f"  clean accuracy      {_pct(doc['clean_accuracy'])}",
        f"  worst-case accuracy {_pct(doc['worst_case_accuracy'])}",
        f"  forward passes      {doc['n_evaluated']:>8d}  in {doc['seconds']:.2f} s"
        f"  ({doc['n_evaluated'] / max(doc['seconds'], 1e-9):,.0f} per s)",
    ]
    curve = doc.get("accuracy_vs_radius")
    if curve:
        lines.append("  worst-case accuracy by radius:")
        for row in curve:
            lines.append(f"    K <= {row['radius']:g}  {_pct(row['worst_case_accuracy'])}")
    return "\n".join(lines)
