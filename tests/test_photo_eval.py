"""`flowact eval` on the photo route: the face-landmark read-back tells a talking photo from a
frozen one, and the CLI picks it for a photograph reference."""

import json

import numpy as np
import pytest
from PIL import Image

from flowact.judge.photo import evaluate_photo_frames
from flowact.media.audio import write_wav
from flowact.media.ffmpeg import VideoWriter
from flowact.photo import build_rig
from flowact.world.clip import make_clip
from flowact.world.motion_vector import clip_motion, reference_motion
from helpers import run_cli


@pytest.fixture(scope="module")
def talking():
    import skimage.data

    photo = skimage.data.astronaut()
    rig = build_rig(photo, size=192)
    clip = make_clip(4, 4.0, 128, 128)  # speaks through most of its 4 s
    frames = rig.render(clip_motion(clip), reference_motion(clip))
    return photo, frames, clip.audio


def test_world_motion_on_a_photo_reads_back_as_talking_and_frozen_does_not(talking):
    photo, frames, audio = talking
    r = evaluate_photo_frames(frames, audio, photo)
    assert r["lipsync"]["mouth_moves"] and r["lipsync"]["correlation"] > 0.3
    assert r["identity"]["face_presence_min"] > 0.5 and r["identity"]["shape_mean"] < 0.1
    still = np.repeat(frames[:1], len(frames), 0)
    s = evaluate_photo_frames(still, audio, photo)
    assert not s["lipsync"]["mouth_moves"] and s["lipsync"]["correlation"] == 0.0
    assert s["motion"]["head_turn_std"] < 0.5 * r["motion"]["head_turn_std"]


def test_eval_cli_routes_a_photograph_reference(talking, tmp_path):
    photo, frames, audio = talking
    ref, wav, mp4 = tmp_path / "face.jpg", tmp_path / "talk.wav", tmp_path / "talk.mp4"
    Image.fromarray(photo).save(ref, quality=92)
    write_wav(wav, audio, 16_000)
    w = VideoWriter(str(mp4), frames.shape[2], frames.shape[1], 25, audio=wav)
    w.write(frames)
    w.close()
    code, out, err = run_cli(["eval", str(mp4), "--audio", str(wav), "--reference", str(ref), "--json"])
    assert code == 0, err
    report = json.loads(out)
    assert report["route"] == "photo" and report["lipsync"]["mouth_moves"] and report["frames"] == len(frames)
