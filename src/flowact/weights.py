"""Weights: one file format for every model, and where a preset's weights come from.

The format (`write`, `read`): safetensors whose header says what it holds, so a file describes its
own architecture: {"format": "flowact-weights-2", "model": "toon" | "motion" | "judge", "config":
the architecture as JSON, "extra": what else the file says (sampler steps, training facts)}.
Files of the older formats ("flowact-weights-1", "flowact-motion-1", the judge's) still load.

Resolution order: `--weights FILE` > `--random-weights` > bundled file > hub (cache first,
then download) > seeded random weights when the preset publishes none (said loudly).
safetensors only, sha256-checked. Offline with nothing cached fails fast with a message
that says what to do, instead of waiting ~24 s on huggingface-hub's retries.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from urllib.parse import urlparse

import torch

from .config import HubSource, Preset
from .errors import FlowactError

FORMAT = "flowact-weights-2"
MODELS = ("toon", "motion", "judge")


@dataclass(frozen=True)
class Header:
    """What a weights file says of itself."""

    model: str  # "toon" | "motion" | "judge"
    config: dict  # the architecture ({} in a file of the first toon format, which named only its preset)
    extra: dict = field(default_factory=dict)
    format: str = FORMAT


def _legacy(meta: dict) -> Header | None:
    """The header of a file in an older format, or None."""
    fmt = meta.get("format")
    if fmt == "flowact-weights-1":
        return Header("toon", {}, {"preset": meta.get("preset")}, fmt)
    if fmt == "flowact-motion-1":
        extra = {k: meta[k] for k in ("steps", "shift") if k in meta}
        return Header("motion", json.loads(meta["config"]), extra, fmt)
    if "flowact_judge" in meta:
        return Header("judge", {}, json.loads(meta["flowact_judge"]), "flowact-judge-1")
    if fmt is None:  # a plain safetensors state dict (another tool's): its tensors must say whether it fits
        return Header("", {}, {}, "")
    return None


def read_header(path: str | Path) -> Header:
    """A weights file's header; a file that is not flowact's is a user error naming it."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise FlowactError(f"not a readable safetensors file ({exc})", path=path) from exc
    if meta.get("format") == FORMAT:
        return Header(meta["model"], json.loads(meta["config"]), json.loads(meta.get("extra", "{}")))
    old = _legacy(meta)
    if old is None:
        raise FlowactError(f"not a flowact weights file (format {meta.get('format')!r})", path=path)
    return old


def read(path: str | Path, model: str | None = None) -> tuple[Header, dict[str, torch.Tensor]]:
    """(header, tensors) of a weights file; `model`: the kind expected (another kind is a user error)."""
    from safetensors.torch import load_file

    header = read_header(path)
    if model is not None and header.model not in (model, ""):
        raise FlowactError(f"this file holds {header.model} weights, not {model} weights", path=path)
    return header, load_file(str(path))


def write(path: str | Path, state: dict, model: str, config: dict, extra: dict | None = None) -> Path:
    """Tensors + the header that describes them (`model`: one of MODELS; `config`: its architecture)."""
    from safetensors.torch import save_file

    if model not in MODELS:
        raise ValueError(f"unknown model kind {model!r}")
    meta = {"format": FORMAT, "model": model, "config": json.dumps(config), "extra": json.dumps(extra or {})}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata=meta)
    return Path(path)


def architecture(preset: Preset) -> dict:
    """What shapes a toon preset's networks (weights saved for it carry this)."""
    return {
        "model": asdict(preset.model),
        "vae": asdict(preset.vae),
        "audio": asdict(preset.audio),
        "text": asdict(preset.text),
        "lips": None if preset.lips is None else asdict(preset.lips),
    }


def _differences(saved: dict, wanted: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(saved) | set(wanted)):
        a, b = saved.get(k), wanted.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k} {a} (file) vs {b} (preset)")
    return out


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
    header, state = read(source.path, "toon")
    own = model.state_dict()
    # the file's own description of its architecture says why it does not fit, where it does not
    saved = _differences(header.config, architecture(model.preset)) if header.config else []
    why = f"; it was saved for {', '.join(saved[:3])}" if saved else ""
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
            f"{len(unexpected)} unexpected keys ({detail}){why}",
            path=source.path,
        )
    for key, value in state.items():
        if value.shape != own[key].shape:
            raise FlowactError(
                f"weights do not fit preset '{model.preset.name}': {key} has shape "
                f"{tuple(value.shape)}, the model wants {tuple(own[key].shape)}{why}",
                path=source.path,
            )
    model.load_state_dict(state, strict=False)


def save(model: torch.nn.Module, path: str | Path, dtype: torch.dtype | None = None) -> Path:
    """A toon model's weights (a `FlowActModel`), with its preset's architecture."""
    state = {
        k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v) for k, v in model.state_dict().items()
    }
    return write(path, state, "toon", architecture(model.preset), {"preset": model.preset.name})
