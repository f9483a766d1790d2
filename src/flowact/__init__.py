"""flowact: real-time streaming talking-humanoid video generation (FlowAct-R1)."""

__version__ = "0.1.0"
