"""Media in and out: image and audio loading, the ffmpeg writer thread, probing."""
