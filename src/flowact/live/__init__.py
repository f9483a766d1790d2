"""`flowact live`: a paced, command-driven stream. Commands (JSON lines) -> planner ->
chunk generator -> paced writer -> ffmpeg (video + live PCM audio).

protocol.py   the JSON-lines control protocol (commands in) and script files
events.py     status events out (JSON lines)
speech.py     the character's own speech queue, the user's listen channel, incremental audio tokens
planner.py    the behaviour planner interface and the default rule-based planner (silero VAD)
output.py     ffmpeg with a second pipe for live PCM audio
session.py    the paced session loop
"""

from .events import EventLog
from .planner import Observation, Plan, Planner, RulePlanner
from .protocol import Command, ProtocolError, load_script, parse_command
from .session import LiveOptions, LiveSession, run_live

__all__ = [
    "EventLog",
    "Command",
    "ProtocolError",
    "parse_command",
    "load_script",
    "Planner",
    "RulePlanner",
    "Observation",
    "Plan",
    "LiveOptions",
    "LiveSession",
    "run_live",
]
