"""Festival, the world's held-out speech engine: real Festival runs, no stand-ins.

Festival is a system package (scripts/setup.sh installs it as root); without it every test
here fails with the message of what to install, it does not skip.
"""

import numpy as np
import pytest

from flowact.errors import FlowactError
from flowact.world import FPS, festival
from flowact.world.clip import clip_seed, make_clip, split_seed
from flowact.world.speech import SAMPLE_RATE, Phoneme, Voice, random_sentence, random_voice
from flowact.world.visemes import _VOWELS, mouth_track


@pytest.fixture(scope="module", autouse=True)
def festival_installed():
    try:
        festival.check_festival()
    except FlowactError as exc:
        pytest.fail(f"these tests need Festival (scripts/setup.sh installs it as root): {exc}", pytrace=False)


def _voice(name: str, rate: int = 175, pitch: int = 50) -> Voice:
    return Voice("en", name, rate, pitch, 50, engine="festival")


def _sentences(count: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [random_sentence(rng, "en") for _ in range(count)]


def _is_vowel(ipa: str) -> bool:
    return any(ch in _VOWELS for ch in ipa)


@pytest.mark.parametrize("voice", [v.name for v in festival.VOICES])
def test_phonemes_are_ordered_cover_the_audio_and_vowels_are_loud(voice):
    for text, rate, pitch in zip(_sentences(2, 11), (150, 195), (35, 70)):
        sp = festival.synthesize(text, _voice(voice, rate, pitch))
        assert sp.samples.dtype == np.float32 and sp.samples.ndim == 1 and 1.0 < sp.seconds < 8
        assert sp.voice.engine == "festival" and sp.text == text
        ph = sp.phonemes
        # contiguous intervals from 0 to the end of the audio, pauses at both ends
        assert ph[0].start == 0 and abs(ph[-1].end - sp.seconds) < 2e-4
        assert all(a.end == b.start for a, b in zip(ph, ph[1:])) and all(p.end > p.start for p in ph)
        assert ph[0].ipa == "" and ph[-1].ipa == "" and sum(_is_vowel(p.ipa) for p in ph) >= 4

        def rms(p: Phoneme) -> float:
            seg = sp.samples[int(p.start * SAMPLE_RATE) : int(p.end * SAMPLE_RATE)]
            return float(np.sqrt(np.mean(seg.astype(np.float64) ** 2) + 1e-12))

        pause = np.mean([rms(p) for p in ph if not p.ipa])
        vowels = [rms(p) for p in ph if _is_vowel(p.ipa)]
        assert np.mean(vowels) > 20 * pause and min(vowels) > 5 * pause, (voice, text)
        # the vowel track lines up with the loudness envelope: the best lag is within 20 ms (it is 0-10 ms;
        # intervals shifted by 40 ms put it at 30-40 ms)
        hop = SAMPLE_RATE // 200
        n = len(sp.samples) // hop
        env = np.log(np.sqrt((sp.samples[: n * hop].reshape(n, hop) ** 2).mean(1)) + 1e-5)
        t = (np.arange(n) + 0.5) / 200
        vow = np.zeros(n)
        for p in ph:
            vow[(t >= p.start) & (t < p.end)] = _is_vowel(p.ipa)
        env, vow = (env - env.mean()) / env.std(), (vow - vow.mean()) / vow.std()
        lags = np.arange(-30, 31)  # 5 ms steps
        corr = [np.mean(np.roll(vow, k) * env) for k in lags]
        assert abs(lags[int(np.argmax(corr))]) <= 4 and max(corr) > 0.35, (voice, text, lags[int(np.argmax(corr))])


def test_rate_and_pitch_change_the_speech_and_runs_are_deterministic():
    text = "The little teacher walks slowly."
    for v in festival.VOICES:
        slow, fast = festival.synthesize(text, _voice(v.name, 140)), festival.synthesize(text, _voice(v.name, 199))
        assert slow.seconds > 1.25 * fast.seconds, v.name
        again = festival.synthesize(text, _voice(v.name, 140))
        assert np.array_equal(slow.samples, again.samples) and slow.phonemes == again.phonemes
    low, high = (festival.synthesize(text, _voice("kal_diphone", 175, p)).samples for p in (25, 75))
    assert _median_f0(high) > 1.5 * _median_f0(low)


def _median_f0(x: np.ndarray) -> float:
    f0 = []
    for i in range(0, len(x) - 1024, 512):
        fr = x[i : i + 1024] - x[i : i + 1024].mean()
        if np.mean(fr**2) < 1e-3:
            continue
        ac = np.correlate(fr, fr, "full")[1023:]
        lo, hi = SAMPLE_RATE // 400, SAMPLE_RATE // 60
        f0.append(SAMPLE_RATE / (lo + np.argmax(ac[lo:hi])))
    return float(np.median(f0))


def test_phone_mapping_covers_every_phone_the_voices_say_on_world_sentences():
    texts = _sentences(40, 5)
    quoted = " ".join('"' + t.replace('"', '\\"') + '"' for t in texts)
    for v in festival.VOICES:
        # one process per voice: the phones do not depend on duration or pitch. `Utterance` does not
        # evaluate its arguments, hence the eval.
        out = festival.run_scheme(
            f"(voice_{v.name})\n"
            '(format t "set %s\\n" (cadr (assoc (quote name) (PhoneSet.description (quote (name))))))\n'
            "(define (segments text) (utt.relation.items (utt.synth (eval (list (quote Utterance) (quote Text) text))) "
            "(quote Segment)))\n"
            f'(mapcar (lambda (text) (format t "seg %l\\n" (mapcar item.name (segments text)))) (list {quoted}))\n',
            v.name,
        )
        lines = out.splitlines()
        phone_set = next(ln.split()[1] for ln in lines if ln.startswith("set "))
        said = [[p.strip('"') for p in ln[4:].strip("()").split()] for ln in lines if ln.startswith("seg ")]
        assert len(said) == len(texts)
        seen = {p for utt in said for p in utt}
        assert phone_set in festival.PHONE_SETS and seen <= set(festival.PHONE_SETS[phone_set]), (v.name, seen)
        assert len(seen) >= 30, (v.name, sorted(seen))  # the sentences exercise most of the set


@pytest.mark.parametrize("phone_set", list(festival.PHONE_SETS))
def test_phone_tables_match_festivals_phone_sets_and_their_mouth_shapes(phone_set):
    """Every phone Festival defines is mapped, and its mouth shape agrees with Festival's own
    articulatory features (vowel height and rounding, lips closed for labial stops and nasals,
    teeth on lip for labiodentals)."""
    out = festival.run_scheme(
        f"(require (quote {phone_set}_phones))\n(PhoneSet.select (quote {phone_set}))\n"
        '(format t "silences %l\\n" (cadr (assoc (quote silences) (PhoneSet.description (quote (silences))))))\n'
        '(mapcar (lambda (p) (format t "phone %s %l\\n" (car p) (cdr p))) '
        "(cadr (assoc (quote phones) (PhoneSet.description (quote (phones))))))\n"
    )
    lines = out.splitlines()
    silences = set(next(ln for ln in lines if ln.startswith("silences ")).split(" ", 1)[1].strip("()").split())
    features = {}
    for ln in lines:
        if ln.startswith("phone "):
            _, name, rest = ln.split(" ", 2)
            features[name] = dict(
                zip(("vc", "vlng", "vheight", "vfront", "vrnd", "ctype", "cplace"), rest.strip("()").split())
            )
    table = festival.PHONE_SETS[phone_set]
    assert set(table) == set(features) and silences
    for name, f in features.items():
        ipa = table[name]
        if name in silences:
            assert ipa == "", name
            continue
        m = mouth_track([Phoneme(0.1, 0.5, ipa)], 13)
        shape = {k: float(getattr(m, k)[7]) for k in ("open", "round", "closed", "teeth")}
        vowel = f["vc"] == "+" and f["ctype"] in ("0", "r")  # r-coloured vowels too; el/em/en are consonants
        assert _is_vowel(ipa) == vowel, (name, ipa)
        if vowel and f["vlng"] != "d":  # monophthongs: height and rounding as Festival describes them
            assert (shape["round"] > 0.45) == (f["vrnd"] == "+"), (name, ipa, shape)
            assert shape["open"] < 0.4 if f["vheight"] == "1" else True, (name, ipa, shape)
            assert shape["open"] > 0.65 if f["vheight"] == "3" else True, (name, ipa, shape)
        elif not vowel:
            labial_stop = f["cplace"] == "l" and f["ctype"] in ("s", "n")
            assert (shape["closed"] > 0.8) == labial_stop, (name, ipa, shape)
            assert (shape["teeth"] > 0.6) == (f["cplace"] == "b"), (name, ipa, shape)
            if f["cplace"] == "l" and f["ctype"] == "r":  # w
                assert shape["round"] > 0.8, (name, ipa, shape)


def test_heldout_clip_spoken_by_festival_opens_the_mouth_while_speaking():
    clip = make_clip(split_seed(31, "heldout"), 6.0, 64, 64, split="heldout", first_state="speaking", engine="festival")
    assert clip.voice.engine == "festival" and clip.voice.name in {v.name for v in festival.VOICES}
    assert clip.labels()["voice"]["engine"] == "festival" and clip.utterances
    speaking = np.zeros(clip.frames, bool)
    for u in clip.utterances:
        speaking[max(0, int(u.start * FPS)) : int((u.start + u.speech.seconds) * FPS)] = True
    assert speaking.any() and (~speaking).any()
    mouth = clip.mouth
    assert mouth.open[speaking].mean() > 0.12 and mouth.open[speaking].max() > 0.4
    assert mouth.open[~speaking].mean() < 0.05 and mouth.open[speaking].std() > 0.08
    # the clip's audio is the Festival speech, placed where the labels say
    frame_rms = np.sqrt((clip.audio[: clip.frames * 640].reshape(clip.frames, 640) ** 2).mean(1))
    assert frame_rms[speaking].mean() > 10 * frame_rms[~speaking].mean()
    wide, shut = int(np.argmax(mouth.open)), int(np.argmin(np.where(speaking, 9, mouth.open)))
    a, b = clip.render(wide), clip.render(shut)
    assert a.shape == (64, 64, 3) and not np.array_equal(a, b)


def test_evaluation_helpers_speak_heldout_clips_with_festival():
    from flowact.train import evaluate as E
    from flowact.world.clip import heldout_character

    clips = [*E.heldout_clips(2, 1.0, 32, 32, engine="festival"), E.drift_clip(1, 1.0, 32, 32, engine="festival")]
    assert all(heldout_character(c.seed) and c.voice.engine == "festival" for c in clips)
    espeak = next(E.heldout_clips(1, 1.0, 32, 32))
    assert espeak.seed == clips[0].seed and espeak.voice.engine == "espeak"  # the same character, another engine


def test_training_never_gets_festival():
    rng = np.random.default_rng(0)
    for split in (None, "train"):
        with pytest.raises(ValueError, match="held out"):
            random_voice(rng, split=split, engine="festival")
        with pytest.raises(ValueError, match="held out"):
            make_clip(split_seed(3, "train"), 1.0, 32, 32, split=split, engine="festival")
    with pytest.raises(FlowactError, match="English"):
        random_voice(rng, "de", "heldout", "festival")
    assert all(random_voice(rng, split=s).engine == "espeak" for s in (None, "train", "heldout") for _ in range(30))
    assert {random_voice(rng, split="heldout", engine="festival").name for _ in range(60)} == {
        v.name for v in festival.VOICES
    }


def test_training_clips_are_made_without_festival(monkeypatch, tmp_path):
    """With Festival unreachable, the training source still makes its clips: none asks for it."""
    from flowact.train.data import SynthSource

    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FlowactError, match="Festival is not installed"):
        festival.check_festival()
    source = SynthSource(7, 32, 32, seconds=2.0, speaking=0.5, video=False)
    for step in range(6):
        assert source.sample(step, 0, 8).visemes.shape == (8, 5)


# (seed, split, (voice name, rate, pitch, range), first sentence) of default clips, recorded before
# Festival was added: the voice and the sentence come from the clip's seed alone, not from espeak's
# version, so a change in how default clips draw them shows here on any machine.
DEFAULT_CLIPS = [
    (182401534, None, ("pt-br+m7", 192, 37, 84), "Este muito amanhã encontra resposta feliz calmo montanha?"),
    (182401534, "train", ("pt-br+m6", 192, 37, 84), "Este muito amanhã encontra resposta feliz calmo montanha?"),
    (182401543, "heldout", ("en-us+klatt3", 124, 74, 77), "Sings about number blue green answer paints."),
    (639287823, None, ("it+f5", 169, 59, 32), "La tranquillo prima caffè il."),
    (639287823, "train", ("it+f4", 169, 59, 32), "La tranquillo prima caffè il."),
    (639287831, "heldout", ("en-gb-scotland+m7", 170, 69, 59), "Happy today my city quiet!"),
    (2067051294, None, ("fr-be+f3", 195, 50, 28), "Soir jamais nouveau trouve?"),
    (2067051294, "train", ("fr-be+f2", 195, 50, 28), "Soir jamais nouveau trouve?"),
    (2067051303, "heldout", ("nl+m7", 197, 39, 41), "Tuin ochtend mensen schildert samen opent het bouwt raam?"),
]


def test_default_clips_are_unchanged():
    for i, (seed, split, voice, text) in enumerate(DEFAULT_CLIPS):
        assert seed == (clip_seed(2024, i // 3) if split is None else split_seed(clip_seed(2024, i // 3), split))
        c = make_clip(seed, 1.0, 32, 32, split=split, first_state="speaking", lead=0.0)
        v = c.voice
        assert (v.name, v.rate, v.pitch, v.pitch_range, v.engine) == (*voice, "espeak")
        assert c.utterances[0].speech.text == text and "engine" not in c.labels()["voice"]
    # naming the default engine changes nothing
    seed = split_seed(clip_seed(2024, 5), "heldout")
    a = make_clip(seed, 3.0, 32, 32, split="heldout")
    b = make_clip(seed, 3.0, 32, 32, split="heldout", engine="espeak")
    assert np.array_equal(a.audio, b.audio) and np.array_equal(a.mouth.stack(), b.mouth.stack())
    assert a.labels() == b.labels() and np.array_equal(a.render(40), b.render(40))


def test_missing_festival_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FlowactError, match="apt-get install festival festvox-kallpc16k"):
        festival.synthesize("Hello there.", _voice("kal_diphone"))
    monkeypatch.undo()
    with pytest.raises(FlowactError, match="no voice 'nobody_diphone'"):
        festival.synthesize("Hello there.", _voice("nobody_diphone"))
