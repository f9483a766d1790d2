"""Stage names that the CLI lists without importing torch (`flowact train --stage`). The motion
engine's objectives take theirs from here (train/motion.py), so the two cannot drift apart; the toon
model's objectives (stages.py) are checked against TOON_STAGES (tests/test_cli_common.py)."""

# the toon model's stages, in recipe order (train/stages.py OBJECTIVES)
TOON_STAGES = ("vae", "decoder", "pretrain", "memory", "selfforce", "distill", "visemes", "lips", "audio")

MOTION_AUDIO = "motion-audio"  # the ear alone: audio -> the mouth's five numbers
MOTION_PRETRAIN = "motion-pretrain"  # chunkwise diffusion forcing over stream windows
MOTION_SELFFORCE = "motion-selfforce"  # the next chunk on the model's own streamed context
MOTION_DISTILL = "motion-distill"  # the 3-step student on a guided many-step teacher
MOTION_STAGES = (MOTION_AUDIO, MOTION_PRETRAIN, MOTION_SELFFORCE, MOTION_DISTILL)
