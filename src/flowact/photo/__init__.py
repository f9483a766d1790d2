"""The photo route: move a real photograph's own pixels by per-frame motion vectors.

face.py finds the face and its 468-point mesh; warp.py turns motion into vertex displacement;
rig.py precomputes the triangulation and renders frames; mouth.py paints the open mouth;
measure.py re-reads rendered frames (lip gap, head turn, eye openness, drift, jitter).
"""

from .face import FaceMesh, analyse, track
from .rig import PhotoRig, build_rig

__all__ = ["FaceMesh", "PhotoRig", "analyse", "build_rig", "track"]
