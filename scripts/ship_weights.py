"""Put trained weights into the package as the preset's bundled default.

    python scripts/ship_weights.py --weights runs/t128/distill.safetensors \
        --decoder runs/t128/decoder.safetensors --preset presets/toon-128.yaml

Takes the transformer, audio and text encoders and the VAE encoder (with its latent
statistics) from --weights, the VAE decoder from --decoder when given (a `--stage decoder`
run sharpens it, or grows it a reference branch, on the same latent space), stores everything in bfloat16 as
src/flowact/assets/<preset>.safetensors, and writes the file name and its sha256 into
the preset's `weights:` block.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, required=True)
    ap.add_argument("--decoder", type=Path)
    ap.add_argument("--preset", type=Path, default=ROOT / "presets" / "toon-128.yaml")
    ap.add_argument(
        "--budget-mb", type=float, default=48.0, help="all bundled .safetensors together must stay under this"
    )
    ap.add_argument(
        "--out",
        type=Path,
        help="write the combined bf16 file here instead (the package and preset are left alone): "
        "to evaluate a candidate exactly as it would ship",
    )
    args = ap.parse_args()

    import torch
    from safetensors.torch import load_file

    from flowact import weights as W
    from flowact.config import load_preset
    from flowact.model import FlowActModel

    preset = load_preset(str(args.preset))
    model = FlowActModel(preset)
    # with --decoder, the decoder comes from that file: --weights may predate its architecture
    # (a plain decoder under a reference-conditioned one)
    W.load_into(model, W.resolve(preset, weights=args.weights), new_ok=("vae.decoder.",) if args.decoder else ())
    if args.decoder:
        dec = {
            k[len("vae.decoder.") :]: v for k, v in load_file(str(args.decoder)).items() if k.startswith("vae.decoder.")
        }
        model.vae.decoder.load_state_dict(dec)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        out = W.save(model, args.out, torch.bfloat16)
        print(f"{out} ({out.stat().st_size / 2**20:.1f} MB), sha256 {W.sha256_of(out)}")
        return 0
    assets = ROOT / "src" / "flowact" / "assets"
    name = f"{preset.name}.safetensors"
    out = W.save(model, assets / name, torch.bfloat16)
    total = sum(f.stat().st_size for f in assets.glob("*.safetensors")) / 2**20
    if total > args.budget_mb:
        out.unlink()
        print(f"bundled weights would total {total:.1f} MB, over the {args.budget_mb:g} MB budget", file=sys.stderr)
        return 1
    sha = W.sha256_of(out)
    text = args.preset.read_text()
    block = f"weights:\n  bundled: {name}\n  sha256: {sha}\n"
    text = re.sub(r"weights:\n(  .*\n?)*", block, text) if "weights:" in text else text + block
    args.preset.write_text(text)
    print(f"{out} ({out.stat().st_size / 2**20:.1f} MB, all bundled {total:.1f} MB), sha256 {sha}")
    return 0


if __name__ == "__main__":
    from flowact.errors import FlowactError

    try:
        sys.exit(main())
    except FlowactError as exc:  # a file that does not fit: one line, not a traceback
        print(f"ship_weights: {exc}", file=sys.stderr)
        sys.exit(2)
