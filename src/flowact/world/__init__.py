"""The synthetic humanoid world: procedural characters, espeak-ng speech with visemes (and
Festival's voices for held-out evaluation, festival.py), behaviour timelines, and clips with
exact per-frame labels (`flowact synth`).

Data flow: seed -> character.py (style) + speech.py (voice, wav, phoneme timings)
-> visemes.py (mouth per frame) + behaviour.py (timeline -> head, gaze, arms per frame)
-> draw.py / canvas.py (frames) -> clip.py (one clip, its files) -> synth.py (a dataset);
dataset.py reads a dataset back. Never imports the model or the stream.
"""

FPS = 25  # video frames per second of the world (visemes, timelines, labels)
