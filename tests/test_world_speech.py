"""espeak-ng speech with phoneme timings, and visemes with coarticulation."""

import numpy as np
import pytest

from flowact.errors import FlowactError
from flowact.world import speech
from flowact.world.speech import Phoneme, Voice, synthesize
from flowact.world.visemes import REST, mouth_track

EN = Voice("en", "en-us+m3", 160, 50, 50)


def test_speech_has_audio_and_ordered_phoneme_timings():
    sp = synthesize("Hello world, my favourite movie is about a brave fish.", EN)
    assert sp.samples.dtype == np.float32 and 1.5 < sp.seconds < 6
    assert np.abs(sp.samples).max() > 0.1
    starts = [p.start for p in sp.phonemes]
    assert starts == sorted(starts) and sp.phonemes[-1].end <= sp.seconds + 1e-3
    ipa = "".join(p.ipa for p in sp.phonemes)
    assert "m" in ipa and "f" in ipa and "b" in ipa
    # the audio is loud where phonemes are and the phoneme span covers the sound
    voiced = [p for p in sp.phonemes if p.ipa]
    assert voiced[0].start < 0.2 and voiced[-1].end > sp.seconds * 0.8


def test_voices_and_languages_differ():
    a = synthesize("Good morning to you", EN)
    b = synthesize("Good morning to you", Voice("en", "en-us+f3", 200, 80, 50))
    assert abs(a.seconds - b.seconds) > 0.05 or not np.allclose(a.samples[:8000], b.samples[:8000])
    de = synthesize("Guten Morgen, ich trinke Kaffee", Voice("de", "de", 160, 50, 50))
    assert {"ç", "ɪ"} & {p.ipa for p in de.phonemes}
    rng = np.random.default_rng(3)
    voices = {speech.random_voice(rng).name for _ in range(40)}
    assert len(voices) > 20
    for lang in speech.LANGUAGES:
        s = synthesize(speech.random_sentence(rng, lang), speech.random_voice(rng, lang))
        assert s.seconds > 0.5 and len(s.phonemes) > 5, lang


def test_missing_library_is_a_clear_error(monkeypatch):
    def fail(*a, **k):
        raise OSError("not found")

    monkeypatch.setattr(speech, "_ENGINE", None)
    monkeypatch.setattr(speech.ctypes, "CDLL", fail)
    with pytest.raises(FlowactError, match="espeak-ng is not installed"):
        speech.check_espeak()


def _phon(*items):
    return [Phoneme(s, e, p) for s, e, p in items]


def test_visemes_close_lips_for_bilabials_and_show_teeth_for_labiodentals():
    m = mouth_track(_phon((0.0, 0.2, "a"), (0.2, 0.3, "m"), (0.3, 0.5, "a"), (0.5, 0.6, "f"), (0.6, 0.8, "a")), 25)
    assert m.closed[int(0.25 * 25)] > 0.8 and m.open[int(0.25 * 25)] < 0.15
    assert m.open[int(0.1 * 25)] > 0.7
    assert m.teeth[int(0.55 * 25)] > 0.6 and m.closed[int(0.55 * 25)] < 0.5


def test_visemes_round_and_wide_vowels():
    m = mouth_track(_phon((0.0, 0.3, "u"), (0.3, 0.6, "i")), 15)
    assert m.round[3] > 0.8 and m.width[3] < 0.3
    assert m.width[12] > 0.85 and m.round[12] < 0.15


def test_a_pause_between_utterances_is_the_rest_shape():
    # leading silence 0-1 s, an utterance, a 2 s pause, another utterance, trailing silence
    words = ((1.0, 1.2, "h"), (1.2, 1.4, "a"), (1.4, 1.6, "m"), (3.6, 3.8, "b"), (3.8, 4.0, "i"), (4.0, 4.2, "t"))
    m = mouth_track(_phon(*words), 125).stack()
    lead, pause = m[int(0.3 * 25)], m[int(2.6 * 25)]
    closed = (REST[3] - 0.35) / 0.45
    rest = [REST[0] * (1 - closed) ** 1.5, REST[1], REST[2], closed, 0.0]
    np.testing.assert_allclose(lead, rest, atol=1e-3)
    np.testing.assert_allclose(pause, lead, atol=1e-4)  # not an all-zero mouth: the same rest as the clip's ends
    assert (m[int(1.8 * 25) : int(3.4 * 25), 1] > 0.4).all()  # the whole pause, not only its middle


def test_coarticulation_anticipates_and_is_smooth():
    m = mouth_track(_phon((0.8, 1.2, "a")), 50)
    assert m.open[:10].max() < REST[0] + 0.02  # silence long before: mouth at rest
    assert m.open[int(0.8 * 25) - 1] > 0.1  # lips open ahead of the sound
    assert np.abs(np.diff(m.open)).max() < 0.5  # no single-frame pops
    sp = synthesize("Peter picked a pepper", EN)
    track = mouth_track(sp.phonemes, int(sp.seconds * 25) + 1)
    assert track.closed.max() > 0.8 and track.open.max() > 0.4
    assert track.open.std() > 0.1  # the mouth really moves while talking
