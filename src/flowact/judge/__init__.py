"""The evaluator (`flowact eval`): networks that read the world's labels back from any video.

net.py (frame reader CNN + temporal state head, audio-to-mouth model) -> frames.py (any
frame to the 128x128 input) -> metrics.py (lip-sync, behaviour, identity, flicker) ->
evaluate.py (files in, report out); train.py trains it from the world, weights.py loads
the shipped weights. Imports the world for labels, never the model or the stream.
"""
