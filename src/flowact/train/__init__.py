"""Training beside inference: the one training loop (loop.py `fit`) and the objectives it trains:
the toon model's nine stages (`stages.STAGES`: vae, decoder, pretrain, memory, selfforce, distill,
visemes, lips, audio), the motion engine's four (motion.py), the judge's networks (judge/train.py);
data, the latent cache, checkpoints, ranks. The recipe: docs/training-toon128.md. Imports the
model, the stream and the world; nothing in the model imports this package."""
