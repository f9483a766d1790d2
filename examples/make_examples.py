"""Regenerate the example characters and speech tracks in this folder from the synthetic world.

    python examples/make_examples.py

character_N.png: neutral reference frames (256x256) of procedural characters;
speech_LANG.wav: 16 kHz espeak-ng speech. Deterministic: the same files every run
(given the same espeak-ng version).

Not made here (real inputs for the photo route): astronaut.jpg is scikit-image's `astronaut()`
(a public-domain NASA portrait of Eileen Collins) saved as a JPEG; human_speech.wav is the CMU
ARCTIC utterance arctic_a0007 (a human voice) as shipped in pysptk's wheel, under the licence in
human_speech.COPYING.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from flowact.media.audio import write_wav
from flowact.world.behaviour import neutral_motion
from flowact.world.character import sample_character
from flowact.world.clip import REST_MOUTH
from flowact.world.draw import Renderer
from flowact.world.speech import SAMPLE_RATE, Voice, synthesize

HERE = Path(__file__).resolve().parent
CHARACTERS = (7, 21, 1234, 4242)
SPEECH = {
    "en": (Voice("en", "en-us+f3", 160, 55, 60), "Hello! I am a little cartoon character, and I can talk to you."),
    "es": (
        Voice("es", "es+m3", 165, 45, 55),
        "Hola, me llamo Pablo. Hoy hace buen tiempo, y quiero contarte una historia.",
    ),
    "de": (Voice("de", "de+f2", 150, 50, 50), "Guten Morgen! Ich bin eine kleine Figur, und ich spreche gern mit dir."),
}


def main() -> None:
    for k, seed in enumerate(CHARACTERS, 1):
        c = sample_character(seed)
        frame = Renderer(c, 256, 256).frame(neutral_motion(c), REST_MOUTH, 0)
        Image.fromarray(frame).save(HERE / f"character_{k}.png", optimize=True)
    for lang, (voice, text) in SPEECH.items():
        sp = synthesize(text, voice)
        pad = np.zeros(int(0.25 * SAMPLE_RATE), np.float32)
        write_wav(HERE / f"speech_{lang}.wav", np.concatenate([pad, sp.samples, pad]), SAMPLE_RATE)
        print(f"speech_{lang}.wav: {sp.seconds + 0.5:.1f} s")


if __name__ == "__main__":
    main()
