"""Published weights of torchvision, timm and Hugging Face models, through each library's own cache.

Each function returns a local file or folder. A cached copy is used as it is, without
network. An uncached one is downloaded, through the library's standard cache, when the
host answers within a few seconds; otherwise (offline, or ``SHIFTATTACK_OFFLINE``,
``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` set to 1) the call fails at once with a
:class:`~shiftattack.errors.ModelError` naming the file or repository to place in the cache
and the folder it goes in. Never a hang, never a traceback from deep inside a library.

Caches (read from the environment at call time, so a test can point them elsewhere):

* torch hub (torchvision weights, timm weights published by URL only):
  ``$TORCH_HOME/hub/checkpoints/FILE`` (default ``~/.cache/torch``);
* Hugging Face hub (timm weights with an ``hf_hub_id``, ``transformers`` models):
  ``$HF_HUB_CACHE`` or ``$HF_HOME/hub`` (default ``~/.cache/huggingface/hub``), in the hub's
  layout ``models--ORG--NAME/snapshots/REVISION/FILE`` with ``refs/main`` naming REVISION.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from shiftattack.errors import ModelError, SpecError

__all__ = [
    "TimmWeights",
    "hf_cache_dir",
    "hf_snapshot",
    "offline",
    "timm_weights",
    "torch_hub_dir",
    "torchvision_weights",
]

_OFFLINE_VARIABLES = ("SHIFTATTACK_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_PROBE_SECONDS = 3.0
_HF_HOST = "huggingface.co"


def offline() -> bool:
    """True when one of ``SHIFTATTACK_OFFLINE``, ``HF_HUB_OFFLINE``, ``TRANSFORMERS_OFFLINE`` says so."""
    return any(
        os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in _OFFLINE_VARIABLES
    )


def _reachable(host: str) -> bool:
    """Whether ``host``:443 accepts a TCP connection within a few seconds (False when offline)."""
    if offline():
        return False
    try:
        socket.create_connection((host, 443), timeout=_PROBE_SECONDS).close()
    except OSError:
        return False
    return True


def torch_hub_dir() -> Path:
    """torch hub's folder (``$TORCH_HOME/hub``), read now."""
    import torch

    return Path(torch.hub.get_dir())


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache: ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
    ``~/.cache/huggingface/hub``."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface"
    )
    return Path(home) / "hub"


def _not_cached(what: str, host: str, place: str) -> ModelError:
    return ModelError(
        f"--pretrained: {what} is not in the cache and {host} cannot be reached "
        f"(offline, or {'/'.join(_OFFLINE_VARIABLES)} set). {place}, or run once online."
    )


def _url_file(url: str, what: str) -> Path:
    """The torch hub cache file of ``url``, downloaded when missing and the host answers."""
    path = torch_hub_dir() / "checkpoints" / os.path.basename(urlparse(url).path)
    if path.is_file():
        return path
    host = urlparse(url).hostname or url
    if not _reachable(host):
        raise _not_cached(what, host, f"Place {url} as {path} (torch hub cache: $TORCH_HOME/hub/checkpoints)")
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(url, str(path), progress=True)  # writes a temporary file, then renames
    return path


def torchvision_weights(name: str):
    """torchvision's default published weights of ``name``: (local file, the ``WeightsEnum`` member).

    The member gives the class count (``meta["categories"]``) and the input normalisation
    (``transforms()``'s mean and std).
    """
    import torchvision

    try:
        weights = torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, KeyError):
        raise SpecError(
            f"torchvision publishes no weights for {name!r} (or knows no such model); "
            f"models with weights: {', '.join(sorted(torchvision.models.list_models()))}"
        ) from None
    return _url_file(weights.url, f"torchvision's {weights} weights for {name}"), weights


def _hf_cached(repo: str, filename: str, revision: str | None = None) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, filename, cache_dir=hf_cache_dir(), revision=revision)
    return Path(found) if isinstance(found, str) else None


@dataclass(frozen=True)
class TimmWeights:
    """Where timm's published weights of one model are: ``file`` (local), and their origin (repo or URL)."""

    file: Path
    origin: str


def timm_weights(name: str) -> TimmWeights:
    """timm's published weights of ``name`` (``arch`` or ``arch.tag``) as a local file.

    Looked up as timm does: the ``hf_hub_id`` repository's ``model.safetensors`` (then
    ``pytorch_model.bin``) in the Hugging Face cache, else the ``url`` in the torch hub cache.
    """
    from timm.models import get_pretrained_cfg

    try:
        cfg = get_pretrained_cfg(name)
    except RuntimeError as exc:
        raise SpecError(f"timm:{name}: {exc}") from None
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        raise SpecError(f"timm publishes no weights for {name!r}; load your own with --weights FILE")
    if cfg.hf_hub_id:
        repo, _, revision = cfg.hf_hub_id.partition("@")
        names = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
        for filename in names:
            found = _hf_cached(repo, filename, revision or None)
            if found is not None:
                return TimmWeights(found, f"hf:{repo}/{filename}")
        if not _reachable(_HF_HOST):
            if (
                cfg.url
                and (torch_hub_dir() / "checkpoints" / os.path.basename(urlparse(cfg.url).path)).is_file()
            ):
                return TimmWeights(_url_file(cfg.url, name), cfg.url)
            raise _not_cached(
                f"timm's {name} weights ({repo}, file {names[0]})",
                _HF_HOST,
                f"Place the repository's {names[0]} in the Hugging Face cache {hf_cache_dir()} "
                f"(e.g. `hf download {repo} {names[0]}` on a machine online, then copy "
                f"{hf_cache_dir() / ('models--' + repo.replace('/', '--'))})",
            )
        from huggingface_hub import hf_hub_download

        for filename in names:
            try:
                path = hf_hub_download(repo, filename, revision=revision or None, cache_dir=hf_cache_dir())
            except Exception as exc:  # a missing file in the repo: try the next name
                last = exc
                continue
            return TimmWeights(Path(path), f"hf:{repo}/{filename}")
        raise ModelError(f"--pretrained: cannot download timm's {name} weights from {repo}: {last}")
    return TimmWeights(_url_file(cfg.url, f"timm's {name} weights"), cfg.url)


def hf_snapshot(repo: str) -> Path:
    """The local folder of Hugging Face repository ``repo`` (its ``main`` revision) in the hub cache.

    Downloads its configuration, image processor and weights files when not cached and the hub answers.
    """
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo, cache_dir=hf_cache_dir(), local_files_only=True))
    except Exception:  # not cached (the hub raises several kinds): fetch below, or say where it goes
        pass
    if not _reachable(_HF_HOST):
        raise _not_cached(
            f"the Hugging Face model {repo}",
            _HF_HOST,
            f"Place the repository in the Hugging Face cache {hf_cache_dir()} (e.g. `hf download {repo}` "
            f"on a machine online, then copy {hf_cache_dir() / ('models--' + repo.replace('/', '--'))}), "
            "or give a local folder saved with save_pretrained as hf:PATH",
        )
    try:
        return Path(
            snapshot_download(
                repo,
                cache_dir=hf_cache_dir(),
                allow_patterns=["*.json", "*.safetensors", "*.bin", "*.txt", "*.model"],
            )
        )
    except Exception as exc:
        raise ModelError(
            f"--pretrained: cannot download {repo} from the Hugging Face hub: {type(exc).__name__}: {exc}"
        ) from None
