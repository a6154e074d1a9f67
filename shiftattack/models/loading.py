"""Build a model from a command-line spec and load its weights safely.

Model specs (DESIGN.md ``--model``):

* a registry name (``shiftattack.models.list_models()``), e.g. ``small_cnn``;
* ``torchvision:NAME`` — ``torchvision.models.get_model(NAME, weights=None)`` (no input
  normalisation: give ``--mean``/``--std``), or with ``pretrained`` torchvision's default
  published weights and their normalisation inside;
* ``timm:NAME`` — ``timm.create_model(NAME)``, its ``pretrained_cfg`` mean/std inside
  (:func:`~shiftattack.models.libraries.timm_model`; ``pip install 'shiftattack[timm]'``);
* ``hf:FOLDER`` or ``hf:ORG/NAME`` — a ``transformers`` image classifier, its image processor's
  normalisation inside (:func:`~shiftattack.models.libraries.hf_model`; ``'shiftattack[hf]'``);
* ``package.module:callable`` — an importable factory;
* ``path/to/file.py:callable`` — a factory in a Python file.

Every factory is called without arguments and must return an ``nn.Module``
mapping (N, 3, H, W) floats in [0, 1] to logits (N, classes). ``pretrained`` loads the
library's published weights through its own cache (:mod:`~shiftattack.models.published`). Weights are read
with ``torch.load(weights_only=True)`` (never unpickling code); a state_dict that
does not match gets a message listing the missing and unexpected keys and the
shape mismatches.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from shiftattack.errors import ModelError, SpecError
from shiftattack.models._registry import create_model, is_model, list_models, parse_model_name
from shiftattack.models.antialias import antialias as _antialias
from shiftattack.models.libraries import HFImageClassifier, hf_folder, hf_model, timm_model
from shiftattack.models.normalize import add_input_normalization, set_input_normalization
from shiftattack.models.published import timm_weights, torchvision_weights
from shiftattack.models.weights import (  # noqa: F401  (also importable from here)
    _load_state,
    classes_in_weights,
    file_sha256,
    load_weights,
    read_state_dict,
    state_matches,
)

#: spec prefixes of model libraries (``PREFIX:NAME``)
LIBRARY_PREFIXES = ("torchvision", "timm", "hf")

__all__ = ["LIBRARY_PREFIXES", "Normalize", "check_weights_given", "file_sha256", "load_model", "load_weights",
           "model_source", "needs_weights", "resolved_model_spec", "weights_file", "weights_sha256"]


class Normalize(nn.Module):
    """Wrap a model that expects normalised input: ``model((x - mean) / std)``.

    Args:
        model: the wrapped classifier.
        mean, std: per-channel statistics (C values each).

    Shape:
        input (N, C, H, W) in [0, 1] -> the model's output.
    """

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise SpecError(f"--mean has {len(mean)} values but --std has {len(std)}")
        if any(s <= 0 for s in std):
            raise SpecError(f"--std values must be positive, got {list(std)}")
        self.model = model
        stats = torch.tensor([list(mean), list(std)], dtype=torch.float32).view(2, 1, -1, 1, 1)
        self.register_buffer("mean", stats[0], persistent=False)
        self.register_buffer("std", stats[1], persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.model((x - self.mean.to(x.dtype)) / self.std.to(x.dtype))


def _split_spec(spec: str) -> tuple[str, str]:
    for prefix in LIBRARY_PREFIXES:  # the name may hold colons or slashes (hf:ORG/NAME, hf:C:/folder)
        if spec.startswith(prefix + ":"):
            name = spec[len(prefix) + 1:]
            if not name:
                raise SpecError(f"invalid model spec {spec!r}: give a name after {prefix}:")
            return prefix, name
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name:
        raise SpecError(
            f"invalid model spec {spec!r}; expected a registered name ({', '.join(list_models())}), "
            "torchvision:NAME, timm:NAME, hf:FOLDER_OR_REPO, package.module:callable or "
            "path/to/file.py:callable")
    return target, name


def _factory_from_file(path: Path, name: str):
    if not path.is_file():
        raise SpecError(f"model file not found: {path}")
    module_name = f"_shiftattack_user_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise SpecError(f"cannot import model file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # user code: report, do not hide
        raise ModelError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    if not hasattr(module, name):
        raise SpecError(f"{path} defines no {name!r}")
    return getattr(module, name)


def _torchvision(name: str, pretrained: bool, num_classes: int | None) -> nn.Module:
    """torchvision's ``name``: random weights and no normalisation, or (pretrained) the published weights
    with their normalisation inside."""
    import torchvision

    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    if not pretrained:
        try:
            return torchvision.models.get_model(name, weights=None, **kwargs)
        except ValueError as exc:
            raise SpecError(f"unknown torchvision model {name!r}: {exc}") from None
    _, weights = torchvision_weights(name)  # cached (or downloaded) first, so torchvision finds the file
    model = torchvision.models.get_model(name, weights=weights)
    if num_classes is not None and num_classes != len(weights.meta["categories"]):
        model = torchvision.models.get_model(name, weights=None, **kwargs)  # weights of another class count
    transform = weights.transforms()
    return add_input_normalization(model, tuple(transform.mean), tuple(transform.std))


def _registry(spec: str, pretrained: bool, num_classes: int | None) -> nn.Module:
    model = create_model(spec) if num_classes is None else create_model(spec, num_classes=num_classes)
    if pretrained:
        from shiftattack.models.zoo import ARCHS

        if spec not in ARCHS:
            raise SpecError(f"--pretrained: {spec!r} has no published weights (the zoo's torchvision "
                            "baselines "
                            f"{', '.join(ARCHS)} have torchvision's); give --weights FILE")
        import torchvision

        _, weights = torchvision_weights(spec)
        model.load_state_dict(torchvision.models.get_model(spec, weights=weights).state_dict())
    return model


def _build(spec: str, pretrained: bool = False, num_classes: int | None = None) -> nn.Module:
    if is_model(spec):
        return _registry(spec, pretrained, num_classes)
    target, name = _split_spec(spec)
    if target == "torchvision":
        return _torchvision(name, pretrained, num_classes)
    if target == "timm":
        return timm_model(name, pretrained, num_classes)
    if target == "hf":
        return hf_model(name, pretrained)
    if pretrained:
        raise SpecError(f"--pretrained applies to zoo names, torchvision:, timm: and hf: specs; {spec!r} "
                        "is a "
                        "factory: load its weights with --weights FILE (or in the factory)")
    if target.endswith(".py"):
        factory = _factory_from_file(Path(target), name)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise SpecError(f"cannot import module {target!r} for model spec {spec!r}: {exc}") from None
        if not hasattr(module, name):
            raise SpecError(f"module {target!r} defines no {name!r}")
        factory = getattr(module, name)
    if not callable(factory):
        raise SpecError(f"{spec!r} is not callable")
    try:
        model = factory()
    except Exception as exc:
        raise ModelError(f"calling {spec} failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise ModelError(f"{spec} returned {type(model).__name__}; expected a torch.nn.Module")
    return model


def weights_file(spec: str, weights: str | Path | None = None, pretrained: bool = False) -> Path | None:
    """The file that holds the weights :func:`load_model` loads for these arguments (None: random weights).

    ``weights`` itself; else with ``pretrained`` the library's cached file; else, for ``hf:FOLDER``,
    the folder's weights file. Resolving a pretrained file may download it (see
    :mod:`~shiftattack.models.published`).
    """
    if weights is not None:
        if not Path(weights).is_file():
            raise ModelError(f"weights file not found: {weights}")
        return Path(weights)
    if spec.startswith("hf:"):
        folder = hf_folder(spec[3:], pretrained)
        for name in ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                     "pytorch_model.bin.index.json"):
            if (folder / name).is_file():
                return (folder / name).resolve()
        return None
    if not pretrained:
        return None
    if spec.startswith("timm:"):
        return timm_weights(spec[5:]).file
    name = spec[len("torchvision:"):] if spec.startswith("torchvision:") else spec
    return torchvision_weights(name)[0]


def model_source(spec: str) -> Path | None:
    """The local Python file of a ``file.py:callable`` spec, or None for any other spec."""
    if is_model(spec) or any(spec.startswith(p + ":") for p in LIBRARY_PREFIXES):
        return None
    target, sep, _ = spec.rpartition(":")
    return Path(target) if sep and target.endswith(".py") else None


def resolved_model_spec(spec: str) -> str:
    """``spec`` with its local path made absolute (``file.py:callable``, ``hf:FOLDER``), so that it
    names the same model from any working directory; other specs are returned as they are."""
    source = model_source(spec)
    if source is not None:
        return f"{source.resolve()}:{spec.rpartition(':')[2]}"
    if spec.startswith("hf:") and Path(spec[3:]).is_dir():
        return f"hf:{Path(spec[3:]).resolve()}"
    return spec


def _builds_network(spec: str) -> bool:
    """Registry names and ``torchvision:``/``timm:`` specs: their builder makes a fresh network and takes a
    class count (an ``hf:`` folder holds its weights; a user's factory may load its own)."""
    return is_model(spec) or spec.startswith(("torchvision:", "timm:"))


def needs_weights(spec: str) -> bool:
    """Whether ``spec`` builds a network whose weights must come from a file or the library."""
    return _builds_network(spec)


def check_weights_given(spec: str, weights, pretrained: bool, random_weights: bool) -> None:
    """Refuse to score a randomly initialised network unless asked (``--random-weights``).

    Raises:
        SpecError: ``spec`` needs weights (:func:`needs_weights`) and none were given, naming the fix.
    """
    if random_weights and (weights is not None or pretrained):
        raise SpecError("--random-weights contradicts --weights/--pretrained; give one of them")
    if is_model(spec):
        parse_model_name(spec)  # a malformed registry name gets its own error first
    if random_weights or weights is not None or pretrained or not needs_weights(spec):
        return
    library = spec.startswith(("torchvision:", "timm:")) or spec in _zoo_archs()
    raise SpecError(f"{spec} has no weights: without --weights FILE" + (" or --pretrained" if library else "")
                    + " it would be scored with random initial weights (about chance accuracy); give --weights "
                    "FILE" + (", or --pretrained for the library's published weights" if library else "")
                    + ", or --random-weights if a random network is what you want to measure")


def _zoo_archs() -> tuple[str, ...]:
    from shiftattack.models.zoo import ARCHS

    return ARCHS


def weights_sha256(spec: str, weights: str | Path | None = None, pretrained: bool = False) -> str | None:
    """sha256 of :func:`weights_file` (None: random weights): the weights fingerprint of a run."""
    path = weights_file(spec, weights, pretrained)
    return None if path is None else file_sha256(path)


def load_model(
    spec: str,
    weights: str | Path | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    trust_pickle: bool = False,
    pretrained: bool = False,
    antialias: int | None = None,
    init_seed: int | None = None,
) -> nn.Module:
    """Build the model of ``spec``, load its weights, optionally anti-alias it, and normalise its input.

    Args:
        spec: see the module docstring.
        weights: a state_dict file; for ``hf:`` specs it loads into the transformers model.
        mean, std: the input normalisation; wraps the model in :class:`Normalize`, except for
            models that normalise inside (``timm:``, ``hf:``, pretrained ``torchvision:``), whose
            own normalisation they replace.
        trust_pickle: allow a weights file that only full unpickling reads (see :func:`read_state_dict`).
        pretrained: the library's published weights (zoo torchvision baselines, ``torchvision:``,
            ``timm:``, ``hf:``), from its cache or downloaded (:mod:`~shiftattack.models.published`).
        antialias: a BlurPool filter size: :func:`~shiftattack.models.antialias` the model. A weights
            file saved from an anti-aliased model loads into the converted layout; any other into the
            baseline before it is converted (the fine-tuning start of Zhang, 2019).
        init_seed: build the network under ``torch.manual_seed(init_seed)`` (the global generator
            is restored afterwards), so that random initial weights (``--random-weights``) are the
            same in every process and every run; None: the caller's generator state.

    Returns:
        the model in eval mode on the CPU; its input is (N, 3, H, W) in [0, 1].
    """
    if weights is not None and pretrained:
        raise SpecError("give --weights FILE or --pretrained, not both")
    if (mean is None) != (std is None):
        raise SpecError("give both --mean and --std, or neither")
    for option, values in (("--mean", mean), ("--std", std)):
        if values is not None and len(values) != 3:
            raise ModelError(f"{option} has {len(values)} value{'s' if len(values) != 1 else ''} "
                             f"({', '.join(f'{v:g}' for v in values)}) but the images have 3 channels (RGB); "
                             "give one value per channel, e.g. --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225")
    if init_seed is None:
        model = _build(spec, pretrained)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            model = _build(spec, pretrained)
    if weights is not None:
        state = read_state_dict(weights, trust_pickle)
        target = model.model if isinstance(model, HFImageClassifier) else model
        if _builds_network(spec):  # weights trained on another number of classes (e.g. the demo's 8)
            classes = classes_in_weights(target, state)
            if classes is not None:
                model = target = _build(spec, pretrained, num_classes=classes)
        if antialias is not None:
            converted = _antialias(model, filter_size=antialias)
            inner = converted.model if isinstance(converted, HFImageClassifier) else converted
            if state_matches(inner, state):
                target, model, antialias = inner, converted, None
        _load_state(target, state, Path(weights))
    if antialias is not None:
        model = _antialias(model, filter_size=antialias)
    if mean is not None and std is not None:
        if hasattr(model, "input_mean") and not is_model(spec):
            set_input_normalization(model, mean, std)
        else:
            model = Normalize(model, mean, std)
    return model.eval()
