"""Models from timm and Hugging Face ``transformers``, taking (N, 3, H, W) images in [0, 1].

* ``timm:NAME``: ``timm.create_model(NAME)``; its ``pretrained_cfg`` mean and std are applied
  inside the model (:func:`~shiftattack.models.normalize.add_input_normalization`: a forward
  pre-hook and non-persistent buffers), so ``state_dict()`` keys stay timm's and timm's weight
  files load as they are. ``model.default_input_size`` is the cfg's (H, W); inputs are never resized.
* ``hf:PATH`` or ``hf:ORG/NAME``: ``AutoModelForImageClassification`` of a folder saved with
  ``save_pretrained`` (or a hub repository, with ``pretrained=True``), wrapped in
  :class:`HFImageClassifier` (logits out); the folder's image processor rescaling and
  normalisation are applied inside, as ``(x - mean') / std'`` on [0, 1] inputs.

timm and transformers are optional: ``pip install 'shiftattack[timm]'`` / ``'shiftattack[hf]'``.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from torch import Tensor, nn

from shiftattack.errors import ModelError, SpecError
from shiftattack.models.normalize import add_input_normalization
from shiftattack.models.published import hf_snapshot, timm_weights

__all__ = ["HFImageClassifier", "hf_folder", "hf_model", "hf_normalization", "require", "timm_model"]


def require(module: str, extra: str, spec: str):
    """Import ``module`` or raise SpecError telling which extra to install for ``spec``."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise SpecError(
            f"model spec {spec!r} needs the {module} package: pip install 'shiftattack[{extra}]'"
        ) from None


def timm_model(name: str, pretrained: bool = False, num_classes: int | None = None) -> nn.Module:
    """timm's ``name`` mapping (N, 3, H, W) in [0, 1] to logits, in eval mode.

    Args:
        name: a timm model name, optionally with a pretrained tag (``resnet18.a1_in1k``).
        pretrained: load timm's published weights (:func:`~shiftattack.models.published.timm_weights`).
        num_classes: classifier outputs (default: timm's, 1000 for ImageNet models).
    """
    timm = require("timm", "timm", f"timm:{name}")
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    if not timm.is_model(name.split(".")[0]):
        close = timm.list_models(f"*{name.split('.')[0][:6]}*")[:12]
        raise SpecError(
            f"timm knows no model {name!r}" + (f"; similar names: {', '.join(close)}" if close else "")
        )
    try:
        if pretrained:
            file = timm_weights(name).file
            model = timm.create_model(
                name, pretrained=True, pretrained_cfg_overlay={"file": str(file)}, **kwargs
            )
        else:
            model = timm.create_model(name, pretrained=False, **kwargs)
    except (RuntimeError, ValueError, KeyError, OSError) as exc:
        raise ModelError(f"timm could not build {name!r}: {type(exc).__name__}: {exc}") from None
    cfg = model.pretrained_cfg
    add_input_normalization(
        model, tuple(cfg.get("mean", (0.485, 0.456, 0.406))), tuple(cfg.get("std", (0.229, 0.224, 0.225)))
    )
    model.default_input_size = tuple(cfg.get("input_size", (3, 224, 224))[1:])
    return model.eval()


class HFImageClassifier(nn.Module):
    """A ``transformers`` image classifier as a plain classifier: ``model(pixel_values=x).logits``.

    Shape:
        input (N, C, H, W) (already normalised; :func:`hf_model` adds the normalisation) ->
        logits (N, num_labels).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(pixel_values=x).logits


def hf_folder(source: str, pretrained: bool) -> Path:
    """The local folder of ``hf:SOURCE``: SOURCE itself when it is a folder, else the hub cache's copy."""
    path = Path(source)
    if path.is_dir():
        return path
    if not pretrained:
        raise SpecError(
            f"hf:{source} is not a local folder; give a folder saved with save_pretrained, or add "
            "--pretrained (pretrained=True) to load the published model from the Hugging Face "
            "cache or hub"
        )
    if source.count("/") > 1 or source.startswith((".", "/")):
        raise SpecError(f"hf:{source}: no such folder (and not a hub repository name ORG/NAME)")
    return hf_snapshot(source)


def hf_normalization(folder: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The image processor's rescale + normalise of ``folder`` as (mean, std) on [0, 1] inputs.

    The processor maps pixel values p in 0..255 to ``(p * r - m) / s`` (r: ``rescale_factor``
    when ``do_rescale``, else 1; m, s: ``image_mean``/``image_std`` when ``do_normalize``, else
    0 and 1). With x = p / 255 that is ``(x - m / (255 r)) / (s / (255 r))``.
    """
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        raise SpecError(
            f"{folder} has no preprocessor_config.json (the image processor), so its input "
            "normalisation is unknown; save the processor with save_pretrained, or give --mean "
            "and --std (on [0, 1] inputs)"
        )
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read {path}: {exc}") from None
    scale = 255.0 * (float(cfg.get("rescale_factor", 1 / 255)) if cfg.get("do_rescale", True) else 1.0)
    if cfg.get("do_normalize", True):
        if "image_mean" not in cfg or "image_std" not in cfg:
            raise SpecError(f"{path} normalises but gives no image_mean/image_std; give --mean and --std")
        mean, std = list(cfg["image_mean"]), list(cfg["image_std"])
        if len(mean) == 1:
            mean, std = mean * 3, std * 3
    else:
        mean, std = [0.0] * 3, [1.0] * 3
    return tuple(m / scale for m in mean), tuple(s / scale for s in std)


def hf_model(source: str, pretrained: bool = False, normalize: bool = True) -> nn.Module:
    """The ``transformers`` image classifier of ``hf:SOURCE`` on [0, 1] inputs, in eval mode.

    Args:
        source: a folder saved with ``save_pretrained``, or (with ``pretrained``) a hub repository.
        pretrained: allow loading a hub repository (from the cache, or downloaded when online).
        normalize: apply the folder's image processor normalisation inside the model.
    """
    transformers = require("transformers", "hf", f"hf:{source}")
    folder = hf_folder(source, pretrained)
    try:
        inner = transformers.AutoModelForImageClassification.from_pretrained(
            str(folder), local_files_only=True
        )
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(
            f"transformers cannot load an image classifier from {folder}: {str(exc).splitlines()[0]}"
        ) from None
    model = HFImageClassifier(inner.eval())
    if normalize:
        add_input_normalization(model, *hf_normalization(folder))
    size = getattr(inner.config, "image_size", None)
    if isinstance(size, int):
        model.default_input_size = (size, size)
    return model.eval()
