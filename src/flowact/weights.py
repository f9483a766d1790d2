"""Where a preset's weights come from: a local file, the package (bundled), or the hub.

Resolution order: `--weights FILE` > `--random-weights` > bundled file > hub (cache first,
then download) > seeded random weights when the preset publishes none (said loudly).
safetensors only, sha256-checked. Offline with nothing cached fails fast with a message
that says what to do, instead of waiting ~24 s on huggingface-hub's retries.
"""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import urlparse

import torch

from .config import HubSource, Preset
from .errors import FlowactError

FORMAT = "flowact-weights-1"


@dataclass(frozen=True)
class WeightsSource:
    kind: str  # "local" | "bundled" | "hub" | "random"
    path: Path | None
    seed: int | None = None
    reason: str = ""

    def describe(self) -> str:
        if self.kind == "random":
            return f"RANDOM (seed {self.seed}; {self.reason})"
        return f"{self.kind}: {self.path}"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_sha(path: Path, expected: str | None, what: str) -> None:
    if expected and sha256_of(path) != expected.lower():
        raise FlowactError(f"{what} sha256 mismatch (file corrupt or replaced; expected {expected[:12]}...)", path=path)


def bundled_path(name: str) -> Path:
    return Path(str(resources.files("flowact.assets") / name))


def hub_online(timeout: float = 1.5) -> bool:
    """Quick reachability probe of the hub endpoint (no retries)."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection(
            (url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=timeout
        ):
            return True
    except OSError:
        return False


def hub_cached(src: HubSource, cache_dir: str | None = None) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(src.repo, src.file, revision=src.revision, cache_dir=cache_dir)
    return Path(found) if isinstance(found, str) else None


def hub_fetch(src: HubSource, preset_name: str, cache_dir: str | None = None) -> Path:
    """The cached file, or a download (sha256-checked). Fails fast when offline."""
    path = hub_cached(src, cache_dir)
    if path is None:
        if not hub_online():
            raise FlowactError(
                f"weights for preset '{preset_name}' ({src.repo}/{src.file}) are not cached and the hub is "
                "unreachable (offline); run `flowact download --preset "
                f"{preset_name}` where there is network, or pass --weights FILE or --random-weights"
            )
        from huggingface_hub import hf_hub_download

        try:
            path = Path(hf_hub_download(src.repo, src.file, revision=src.revision, cache_dir=cache_dir))
        except Exception as exc:  # noqa: BLE001 - hub errors are many; all mean "could not fetch"
            raise FlowactError(f"download of {src.repo}/{src.file} failed: {exc}") from exc
    _check_sha(path, src.sha256, "hub weights")
    return path


def resolve(
    preset: Preset,
    *,
    weights: str | Path | None = None,
    random_weights: bool = False,
    seed: int = 0,
    cache_dir: str | None = None,
) -> WeightsSource:
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise FlowactError("weights file not found", path=path)
        if path.suffix != ".safetensors":
            raise FlowactError("weights must be a .safetensors file (pickled checkpoints are not loaded)", path=path)
        return WeightsSource("local", path)
    if random_weights:
        return WeightsSource("random", None, seed, "--random-weights")
    w = preset.weights
    if w.bundled:
        path = bundled_path(w.bundled)
        if path.is_file():
            _check_sha(path, w.sha256, "bundled weights")
            return WeightsSource("bundled", path)
        if w.hub is None:
            raise FlowactError(
                f"preset '{preset.name}' names bundled weights that are missing from this install", path=path
            )
    if w.hub is not None:
        return WeightsSource("hub", hub_fetch(w.hub, preset.name, cache_dir))
    return WeightsSource("random", None, seed, f"preset '{preset.name}' publishes no trained weights yet")


# weights saved before the VAE kept latent statistics lack these: they default to identity
OPTIONAL_KEYS = frozenset({"vae.latent_mean", "vae.latent_std"})
# weights saved before the lip refiner's mouth map lack it: they load with the map off (gate_on 0);
# so do weights saved before the decoder's mouth keep-out (mouth_on 0)
OPTIONAL_PREFIXES = ("lips.gate", "vae.decoder.mouth")


def load_into(model: torch.nn.Module, source: WeightsSource, new_ok: tuple[str, ...] = ()) -> None:
    """Fill `model` from the source (or seed it). Mismatched keys or shapes are user errors,
    except missing keys starting with a prefix in `new_ok`: modules the file predates, which
    keep their own initialisation (training grows a model that way)."""
    if source.kind == "random":
        model.init_random(source.seed or 0)
        return
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(source.path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise FlowactError(f"not a readable safetensors file ({exc})", path=source.path) from exc
    own = model.state_dict()
    missing = [
        k
        for k in sorted(set(own) - set(state) - OPTIONAL_KEYS)
        if not (new_ok and k.startswith(new_ok)) and not k.startswith(OPTIONAL_PREFIXES)
    ]
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise FlowactError(
            f"weights do not fit preset '{model.preset.name}': {len(missing)} missing, "
            f"{len(unexpected)} unexpected keys ({detail})",
            path=source.path,
        )
    for key, value in state.items():
        if value.shape != own[key].shape:
            raise FlowactError(
                f"weights do not fit preset '{model.preset.name}': {key} has shape "
                f"{tuple(value.shape)}, the model wants {tuple(own[key].shape)}",
                path=source.path,
            )
    model.load_state_dict(state, strict=False)


def save(model: torch.nn.Module, path: str | Path, dtype: torch.dtype | None = None) -> Path:
    from safetensors.torch import save_file

    state = {
        k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous()
        for k, v in model.state_dict().items()
    }
    save_file(state, str(path), metadata={"format": FORMAT, "preset": model.preset.name})
    return Path(path)
