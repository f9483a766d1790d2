"""Training beside inference: data, the four stages (vae, pretrain, selfforce, distill), the loop.
Imports the model, the stream and the world; nothing in the model imports this package."""
