"""Loading pictures and speech tracks in the formats users have."""

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from flowact.errors import FlowactError
from flowact.media.audio import load_audio
from flowact.media.image import load_image


@pytest.mark.parametrize(
    "fmt,rate,channels", [("wav", 44100, 2), ("flac", 8000, 1), ("ogg", 48000, 2), ("mp3", 22050, 1)]
)
def test_audio_formats_rates_channels(tmp_path, fmt, rate, channels):
    t = np.arange(int(rate * 1.5)) / rate
    x = 0.3 * np.sin(2 * np.pi * 300 * t)
    data = np.stack([x] * channels, 1) if channels > 1 else x
    path = tmp_path / f"a.{fmt}"
    sf.write(str(path), data, rate)
    audio = load_audio(path)
    assert audio.rate == 16_000 and audio.samples.ndim == 1 and audio.samples.dtype == np.float32
    assert audio.source_rate == rate and audio.source_channels == channels
    assert abs(audio.seconds - 1.5) < 0.06  # mp3 adds encoder padding
    # the resampled tone keeps its pitch: the spectrum peaks at 300 Hz
    spec = np.abs(np.fft.rfft(audio.samples[:16000]))
    assert abs(np.argmax(spec) - 300) <= 2


def test_audio_errors_name_the_file(tmp_path):
    with pytest.raises(FlowactError, match="missing.wav: audio file not found"):
        load_audio(tmp_path / "missing.wav")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x01garbage" * 10)
    with pytest.raises(FlowactError, match="bad.wav: cannot decode audio"):
        load_audio(bad)
    silent = tmp_path / "silent.wav"
    sf.write(str(silent), np.zeros(16000), 16000)
    with pytest.raises(FlowactError, match="silent.wav: audio is silent"):
        load_audio(silent)
    empty = tmp_path / "empty.wav"
    sf.write(str(empty), np.zeros(0), 16000)
    with pytest.raises(FlowactError, match="empty.wav: audio is empty"):
        load_audio(empty)


@pytest.mark.parametrize("mode,ext", [("L", "png"), ("RGBA", "png"), ("RGB", "jpg"), ("RGB", "webp"), ("P", "png")])
def test_image_modes_and_formats(tmp_path, mode, ext):
    arr = (np.random.default_rng(0).random((300, 200, 4)) * 255).astype(np.uint8)
    img = Image.fromarray(arr, "RGBA").convert(mode)
    path = tmp_path / f"i.{ext}"
    img.save(path)
    out = load_image(path, 128, 96)
    assert out.shape == (96, 128, 3) and out.dtype == np.uint8


def test_cover_keeps_the_upper_part_and_contain_pads(tmp_path):
    arr = np.zeros((400, 100, 3), np.uint8)
    arr[:100] = 255  # a white band at the top (where a portrait's face is)
    path = tmp_path / "tall.png"
    Image.fromarray(arr).save(path)
    cover = load_image(path, 64, 64, "cover")  # 100x400 -> 64x256, crop 64 rows starting at 192/3=64
    assert cover[:, :, 0].mean() < 40 or cover[0, 0, 0] > 200  # deterministic crop from the upper part
    top = load_image(path, 64, 64, "cover")[0, 0, 0]
    assert top == load_image(path, 64, 64, "cover")[0, 0, 0]
    contain = load_image(path, 64, 64, "contain")
    assert contain.shape == (64, 64, 3)
    assert contain[32, 0].tolist() == contain[32, 63].tolist()  # padded sides share the border colour
    assert contain[0, 32, 0] > 200  # the white top band is visible in the fitted picture


def test_image_errors_name_the_file(tmp_path):
    with pytest.raises(FlowactError, match="nope.png: image file not found"):
        load_image(tmp_path / "nope.png", 64, 64)
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(FlowactError, match="bad.png: not a readable image"):
        load_image(bad, 64, 64)
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (8, 8)).save(tiny)
    with pytest.raises(FlowactError, match="tiny.png: image is too small"):
        load_image(tiny, 64, 64)
