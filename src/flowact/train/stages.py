"""The nine training stages (`STAGES`), each a loss over one batch of training clips, one
small class per objective over `objective.Objective`:

- vae, decoder (autoencoder.py): the causal VAE, and its decoder alone on a frozen latent space;
- pretrain, memory, selfforce, distill (diffusion.py): the MMDiT by chunkwise diffusion
  forcing, teacher-forced through the real memory bank (every slot layout inference makes), on
  its own rollouts, and distilled to the preset's few steps from a guided many-step teacher;
- visemes, lips (lipsync.py): the lip refiner's ear, and its drawing net;
- audio (lipsync.py): the transformer's audio encoder on the world's mouth parameters.

`Stage(name, ...)` builds one; `trainable(model, name)` lists the parameters it trains. The
loss weights and batch helpers (to_video, mouth_weights, latent_mouth, ...) live in objective.py.
"""

from __future__ import annotations

import torch

from ..errors import FlowactError
from ..model import FlowActModel
from .autoencoder import DecoderObjective, VAEObjective
from .diffusion import DistillObjective, MemoryObjective, PretrainObjective, SelfForceObjective
from .distributed import Ranks
from .lipsync import AudioObjective, LipsObjective, VisemesObjective
from .objective import Objective, StageSettings

OBJECTIVES: dict[str, type[Objective]] = {
    o.name: o
    for o in (
        VAEObjective,
        DecoderObjective,
        PretrainObjective,
        MemoryObjective,
        SelfForceObjective,
        DistillObjective,
        VisemesObjective,
        LipsObjective,
        AudioObjective,
    )
}
STAGES = tuple(OBJECTIVES)


def _objective(name: str) -> type[Objective]:
    if name not in OBJECTIVES:
        raise FlowactError(f"unknown stage '{name}' (stages: {', '.join(STAGES)})")
    return OBJECTIVES[name]


def Stage(
    name: str,
    model: FlowActModel,
    preset,
    settings: StageSettings = StageSettings(),  # noqa: N802 - a factory
    teacher: FlowActModel | None = None,
    ranks: Ranks = Ranks(),
    source=None,
    seed: int = 0,
) -> Objective:
    """The objective of stage `name` for this model; `ranks`: this process's share of a data-parallel run;
    `source` (data.py make_source) and `seed`: where its batches come from."""
    return _objective(name)(model, preset, settings, teacher, ranks, source, seed)


def trainable(model: FlowActModel, stage: str) -> list[torch.nn.Parameter]:
    return _objective(stage).trainable(model)
