"""Speech from Festival: a second engine, heard only in held-out evaluation.

The lip-sync models learn from espeak-ng; users speak with other voices. Festival's voices
(two diphone voices and an HTS one, US English) are never used for a training clip, so an
evaluation on them hears an engine the models never heard. The clip is spoken the way espeak
speaks it: 16 kHz float32 samples and `Phoneme` intervals, here from Festival's Segment
relation (phone names and end times) mapped from its phone set to the IPA visemes.py reads.

Every utterance runs in a fresh `festival --batch` process: Festival keeps settings from one
utterance to the next, and a new process makes an utterance depend on its text and voice only.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import FlowactError
from .speech_types import SAMPLE_RATE, Phoneme, Speech, Voice


@dataclass(frozen=True)
class FestivalVoice:
    name: str  # Festival's voice name: `(voice_<name>)` selects it
    package: str  # the Debian package that installs it
    own_pitch: bool = False  # an HTS voice: its model makes the F0, no pitch control


# The voices held-out clips draw from, all US English on the "radio" phone set.
VOICES = (
    FestivalVoice("kal_diphone", "festvox-kallpc16k"),
    FestivalVoice("ked_diphone", "festvox-kdlpc16k"),
    FestivalVoice("cmu_us_slt_arctic_hts", "festvox-us-slt-hts", own_pitch=True),
)
LANGUAGES = ("en",)  # what the voices above speak (and the world has sentences for)
INSTALL = "apt-get install festival " + " ".join(v.package for v in VOICES)
NOMINAL_RATE = 175  # words per minute at which a voice keeps its own speed
_TIMEOUT_S = 60.0

# Festival's phone sets -> IPA as visemes.py reads it. "radio" is the US set (kal, ked, slt,
# the CMU voices); "mrpa" the British one (rab, gsw) for a voice that uses it. The same name
# can be a different sound ("uh": the vowel of "book" in radio, of "cup" in mrpa), so each set
# has its own table. Syllabic consonants (el, em, en) look like their consonant: "rhythm"
# closes the lips on its last segment. Silences are "".
PHONE_SETS: dict[str, dict[str, str]] = {
    "radio": {
        "aa": "ɑ",
        "ae": "æ",
        "ah": "ʌ",
        "ao": "ɔ",
        "aw": "aʊ",
        "ax": "ə",
        "axr": "ɚ",
        "ay": "aɪ",
        "eh": "ɛ",
        "er": "ɝ",
        "ey": "eɪ",
        "ih": "ɪ",
        "iy": "i",
        "ow": "oʊ",
        "oy": "ɔɪ",
        "uh": "ʊ",
        "uw": "u",
        "el": "l",
        "em": "m",
        "en": "n",
        "b": "b",
        "ch": "tʃ",
        "d": "d",
        "dh": "ð",
        "dx": "ɾ",
        "f": "f",
        "g": "ɡ",
        "hh": "h",
        "hv": "ɦ",
        "jh": "dʒ",
        "k": "k",
        "l": "l",
        "m": "m",
        "n": "n",
        "nx": "n",
        "ng": "ŋ",
        "p": "p",
        "r": "ɹ",
        "s": "s",
        "sh": "ʃ",
        "t": "t",
        "th": "θ",
        "v": "v",
        "w": "w",
        "y": "j",
        "z": "z",
        "zh": "ʒ",
        "pau": "",
        "h#": "",
        "brth": "",
    },
    "mrpa": {
        "uh": "ʌ",
        "e": "ɛ",
        "a": "æ",
        "o": "ɒ",
        "i": "ɪ",
        "u": "ʊ",
        "ii": "iː",
        "uu": "uː",
        "oo": "ɔː",
        "aa": "ɑː",
        "@@": "ɜː",
        "ai": "aɪ",
        "ei": "eɪ",
        "oi": "ɔɪ",
        "au": "aʊ",
        "ou": "əʊ",
        "e@": "eə",
        "i@": "ɪə",
        "u@": "ʊə",
        "@": "ə",
        "p": "p",
        "t": "t",
        "k": "k",
        "b": "b",
        "d": "d",
        "g": "ɡ",
        "s": "s",
        "z": "z",
        "sh": "ʃ",
        "zh": "ʒ",
        "f": "f",
        "v": "v",
        "th": "θ",
        "dh": "ð",
        "ch": "tʃ",
        "jh": "dʒ",
        "h": "h",
        "m": "m",
        "n": "n",
        "ng": "ŋ",
        "l": "l",
        "y": "j",
        "r": "ɹ",
        "w": "w",
        "#": "",
    },
}

# Speed and pitch after the voice is chosen. HTS voices make their own F0 and durations: only
# the engine's speed option applies. Other voices stretch Festival's durations and scale the
# linear-regression F0 targets (kal and ked use them; a voice without them keeps its pitch).
_SCRIPT = """(voice_{voice})
(if (eq? (Parameter.get 'Synth_Method) 'HTS)
  (set! hts_engine_params (append hts_engine_params (list (list "-r" {speed:.6f}))))
  (begin
    (Parameter.set 'Duration_Stretch (/ (Parameter.get 'Duration_Stretch) {speed:.6f}))
    (if (and (boundp 'int_lr_params) (assoc 'target_f0_mean int_lr_params))
      (set! int_lr_params
        (list (list 'target_f0_mean (* {f0_scale:.6f} (cadr (assoc 'target_f0_mean int_lr_params))))
              (list 'target_f0_std (* {f0_spread:.6f} (cadr (assoc 'target_f0_std int_lr_params))))
              (assoc 'model_f0_mean int_lr_params)
              (assoc 'model_f0_std int_lr_params))))))
(set! utt (Utterance Text "{text}"))
(utt.synth utt)
(utt.save.wave utt "{wav}" 'riff)
(utt.save.segs utt "{segs}")
(format t "flowact-phoneset %s\\n" (cadr (assoc 'name (PhoneSet.description '(name)))))
"""


def random_voice(rng: np.random.Generator, language: str | None = None, split: str | None = None) -> Voice:
    """A random Festival voice. Festival is held out of training: `split` must be "heldout"."""
    if split != "heldout":
        raise ValueError(f"Festival voices are held out of training: split {split!r} cannot use them (use 'heldout')")
    if language not in (None, *LANGUAGES):
        raise FlowactError(f"Festival's voices speak English only (language 'en'), not {language!r}")
    voice = VOICES[int(rng.integers(len(VOICES)))]
    rate, pitch, spread = int(rng.integers(140, 200)), int(rng.integers(25, 80)), int(rng.integers(20, 90))
    if voice.own_pitch:
        pitch, spread = 50, 50
    return Voice("en", voice.name, rate, pitch, spread, engine="festival")


def check_festival() -> None:
    """Raise FlowactError when Festival or one of `VOICES` is missing on this machine."""
    installed = run_scheme('(format t "%l\\n" (voice.list))').strip().strip("()").split()
    missing = [v.package for v in VOICES if v.name not in installed]
    if missing:
        raise FlowactError(f"Festival voices missing; install them with `apt-get install {' '.join(missing)}`")


def synthesize(text: str, voice: Voice) -> Speech:
    """Speak `text` with Festival; 16 kHz samples and phoneme intervals (seconds from the start).

    `voice.rate` is words per minute (NOMINAL_RATE: the voice's own speed); `voice.pitch` 50 is the
    voice's own F0, each 10 above or below two semitones higher or lower; `voice.pitch_range` 50
    its own F0 spread, scaled in proportion. Deterministic: one fresh process per utterance.
    """
    samples, rate, segments, phone_set = speak(text, voice)
    table = PHONE_SETS.get(phone_set)
    if table is None:
        raise FlowactError(
            f"Festival voice {voice.name!r} uses phone set {phone_set!r}; flowact maps {', '.join(PHONE_SETS)}"
        )
    audio = samples.astype(np.float32) / 32768.0
    total = len(audio) / rate
    phonemes = []
    start = 0.0
    for i, (end, name) in enumerate(segments):
        if name not in table:
            raise FlowactError(f"Festival phone {name!r} of phone set {phone_set!r} has no IPA in world/festival.py")
        end = total if i == len(segments) - 1 else min(end, total)  # the wave runs on past the last pause
        if end > start:
            phonemes.append(Phoneme(round(start, 4), round(end, 4), table[name]))
            start = end
    if rate != SAMPLE_RATE and len(audio):
        import soxr

        audio = soxr.resample(audio, rate, SAMPLE_RATE).astype(np.float32)
    return Speech(audio, tuple(phonemes), text, voice)


def speak(text: str, voice: Voice) -> tuple[np.ndarray, int, list[tuple[float, str]], str]:
    """Festival's own output for `text`: int16 samples, their rate, the Segment relation as
    (end seconds, phone name) and the name of the voice's phone set."""
    speed = voice.rate / NOMINAL_RATE
    f0_scale = 2.0 ** ((voice.pitch - 50) / 10 * 2 / 12)
    quoted = text.replace("\\", "\\\\").replace('"', '\\"')
    with tempfile.TemporaryDirectory(prefix="flowact-festival-") as tmp:
        wav, segs = Path(tmp) / "speech.wav", Path(tmp) / "speech.segs"
        script = _SCRIPT.format(
            voice=voice.name,
            speed=speed,
            f0_scale=f0_scale,
            f0_spread=voice.pitch_range / 50,
            text=quoted,
            wav=wav,
            segs=segs,
        )
        out = run_scheme(script, voice.name)
        phone_set = next((ln.split()[1] for ln in out.splitlines() if ln.startswith("flowact-phoneset ")), None)
        if phone_set is None or not wav.exists() or not segs.exists():
            raise FlowactError(f"Festival wrote no speech for voice {voice.name!r}: {out.strip()[-200:]!r}")
        with wave.open(str(wav), "rb") as w:
            if w.getsampwidth() != 2 or w.getnchannels() != 1:
                raise FlowactError(f"Festival wrote {w.getnchannels()}-channel {8 * w.getsampwidth()}-bit audio")
            rate = w.getframerate()
            samples = np.frombuffer(w.readframes(w.getnframes()), "<i2")
        return samples, rate, _read_segments(segs.read_text()), phone_set


def _read_segments(text: str) -> list[tuple[float, str]]:
    """xlabel lines after the "#" header: `end colour name`."""
    lines = text.splitlines()
    body = lines[lines.index("#") + 1 :] if "#" in lines else lines
    out = []
    for line in body:
        parts = line.split()
        if len(parts) >= 3:
            out.append((float(parts[0]), parts[-1]))
    return out


def run_scheme(script: str, voice: str | None = None, timeout: float = _TIMEOUT_S) -> str:
    """Run Festival Scheme in a fresh `festival --batch`; its standard output. `voice`: the voice
    the script selects, named in the error when it is not installed."""
    exe = shutil.which("festival")
    if exe is None:
        raise FlowactError(f"Festival is not installed (no `festival` on PATH); install it with `{INSTALL}`")
    with tempfile.TemporaryDirectory(prefix="flowact-festival-") as tmp:
        path = Path(tmp) / "run.scm"
        path.write_text(script, encoding="utf-8")
        try:
            proc = subprocess.run(
                [exe, "--batch", str(path)], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired:
            raise FlowactError(f"Festival did not finish in {timeout:.0f} s") from None
    if proc.returncode != 0:
        if voice is not None and f"unbound variable : voice_{voice}" in proc.stderr:
            package = next((v.package for v in VOICES if v.name == voice), "the festvox package that provides it")
            raise FlowactError(f"Festival has no voice {voice!r}; install it with `apt-get install {package}`")
        detail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise FlowactError(f"Festival failed (exit {proc.returncode}): {detail[0] if detail else 'no output'}")
    return proc.stdout
