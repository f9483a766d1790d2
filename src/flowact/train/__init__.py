"""Training beside inference: data, the seven stages (vae, decoder, pretrain, selfforce, distill,
visemes, lips; `stages.STAGES`), the latent cache, the loop. The recipe: docs/training-toon128.md.
Imports the model, the stream and the world; nothing in the model imports this package."""
