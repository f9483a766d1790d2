"""Speech with phoneme timings from libespeak-ng (ctypes).

espeak-ng's command line prints no timings; its C library reports a phoneme event (IPA
name, sample offset) for every phoneme it synthesises. We ask for synchronous output,
collect the 22.05 kHz samples and the events, and resample to 16 kHz with soxr.

The library keeps state from one utterance to the next (the same text comes out a few
milliseconds different after other speech), which would make clips depend on what a
process said before. So the library is initialised once, never used in this process, and
every utterance is spoken in a forked child that starts from that same clean state, libc's
random seed included. Festival voices (held-out evaluation only) speak through world/festival.py
into the same `Speech` (speech_types.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import pickle
import threading

import numpy as np

from ..errors import FlowactError
from .speech_types import SAMPLE_RATE, Phoneme, Speech, Voice

_EVENT_END_OF_LIST = 0
_EVENT_WORD = 1
_EVENT_PHONEME = 7
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_OPTION_PHONEME_EVENTS = 0x1
_OPTION_PHONEME_IPA = 0x2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_RANGE = 1, 2, 3, 4

# Languages with a small vocabulary below; the voice names are espeak-ng's.
LANGUAGES = {
    "en": ["en-us", "en", "en-gb-scotland", "en-029"],
    "es": ["es", "es-419"],
    "fr": ["fr", "fr-be"],
    "de": ["de"],
    "it": ["it"],
    "pt": ["pt", "pt-br"],
    "nl": ["nl"],
}
VARIANTS = [
    "m1",
    "m2",
    "m3",
    "m4",
    "m5",
    "m6",
    "m7",
    "f1",
    "f2",
    "f3",
    "f4",
    "f5",
    "klatt",
    "klatt2",
    "klatt3",
    "croak",
    "whisper",
]
VARIANTS = [v for v in VARIANTS if v != "whisper"]  # whispered speech barely moves a voice meter
# Voices kept out of model training so that evaluation hears voices the model never heard.
HELDOUT_VARIANTS = ("m7", "f5", "klatt3")
SPLITS = (None, "train", "heldout")
ENGINES = ("espeak", "festival")

_WORDS = {
    "en": (
        "the a my your this that little big happy quiet bright old new green blue red morning evening "
        "river mountain window garden coffee music story friend teacher city market ocean forest "
        "walks finds makes likes brings opens remembers carries paints watches builds sings "
        "today tomorrow slowly quickly always never really very maybe often together about with "
        "before after under over people paper number water weather problem answer question"
    ),
    "es": (
        "el la mi tu este ese pequeño grande feliz tranquilo nuevo viejo verde azul rojo mañana "
        "tarde río montaña ventana jardín café música historia amigo maestro ciudad mercado "
        "camina encuentra hace quiere trae abre recuerda lleva pinta mira construye canta "
        "hoy siempre nunca muy quizás juntos sobre con antes después gente agua tiempo respuesta"
    ),
    "fr": (
        "le la mon ton ce petit grand heureux calme nouveau vieux vert bleu rouge matin soir "
        "rivière montagne fenêtre jardin café musique histoire ami professeur ville marché "
        "marche trouve fait aime apporte ouvre garde porte peint regarde construit chante "
        "aujourd'hui toujours jamais très peut-être ensemble avec avant après gens eau temps"
    ),
    "de": (
        "der die das mein dein dieser kleine große glücklich ruhig neue alte grüne blaue rote "
        "Morgen Abend Fluss Berg Fenster Garten Kaffee Musik Geschichte Freund Lehrer Stadt Markt "
        "geht findet macht liebt bringt öffnet trägt malt sieht baut singt "
        "heute morgen immer nie sehr vielleicht zusammen mit vor nach Leute Wasser Wetter Antwort"
    ),
    "it": (
        "il la mio tuo questo quello piccolo grande felice tranquillo nuovo vecchio verde blu rosso "
        "mattina sera fiume montagna finestra giardino caffè musica storia amico maestro città "
        "cammina trova fa ama porta apre ricorda dipinge guarda costruisce canta "
        "oggi domani sempre mai molto forse insieme con prima dopo gente acqua tempo risposta"
    ),
    "pt": (
        "o a meu teu este esse pequeno grande feliz calmo novo velho verde azul vermelho manhã "
        "tarde rio montanha janela jardim café música história amigo professor cidade mercado "
        "anda encontra faz gosta traz abre lembra leva pinta olha constrói canta "
        "hoje amanhã sempre nunca muito talvez juntos com antes depois gente água tempo resposta"
    ),
    "nl": (
        "de het mijn jouw deze die kleine grote blije rustige nieuwe oude groene blauwe rode "
        "ochtend avond rivier berg raam tuin koffie muziek verhaal vriend leraar stad markt "
        "loopt vindt maakt houdt brengt opent draagt schildert kijkt bouwt zingt "
        "vandaag morgen altijd nooit heel misschien samen met voor na mensen water weer antwoord"
    ),
}


class _Event(ctypes.Structure):
    class _Id(ctypes.Union):
        _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _Id),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


class _Espeak:
    """The loaded library, its sample rate and the buffers the callback fills."""

    def __init__(self) -> None:
        names = ["libespeak-ng.so.1", ctypes.util.find_library("espeak-ng"), "libespeak-ng.so"]
        lib = None
        for name in filter(None, names):
            try:
                lib = ctypes.CDLL(name)
                break
            except OSError:
                continue
        if lib is None:
            raise FlowactError(
                "espeak-ng is not installed (libespeak-ng.so.1 not found); "
                "install it with `apt-get install espeak-ng` (Debian/Ubuntu)"
            )
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, None, _OPTION_PHONEME_EVENTS | _OPTION_PHONEME_IPA
        )
        if self.rate <= 0:
            raise FlowactError("espeak-ng failed to initialise (is espeak-ng-data installed?)")
        self.lib = lib
        self.chunks: list[np.ndarray] = []
        self.events: list[tuple[int, str]] = []
        self._callback = _CALLBACK(self._on_audio)  # keep a reference: the library holds a raw pointer
        lib.espeak_SetSynthCallback(self._callback)
        self.lock = threading.Lock()

    def _on_audio(self, wav, n, events) -> int:
        if n > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != _EVENT_END_OF_LIST:
            ev = events[i]
            if ev.type == _EVENT_PHONEME:
                name = bytes(ev.id.string).split(b"\0")[0].decode("utf-8", "replace")
                self.events.append((int(ev.sample), name))
            i += 1
        return 0


_ENGINE: _Espeak | None = None


def _engine() -> _Espeak:
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = _Espeak()
    return _ENGINE


def check_espeak() -> None:
    """Raise FlowactError when espeak-ng cannot be used on this machine."""
    _engine()


def random_voice(
    rng: np.random.Generator, language: str | None = None, split: str | None = None, engine: str = "espeak"
) -> Voice:
    """A random espeak-ng voice; `split` "train" never picks a held-out variant, "heldout" only those.
    `engine` "festival": a Festival voice, held out as a whole (only `split` "heldout" may ask)."""
    if split not in SPLITS:
        raise ValueError(f"unknown voice split {split!r}")
    if engine not in ENGINES:
        raise ValueError(f"unknown speech engine {engine!r}")
    if engine == "festival":
        from . import festival

        return festival.random_voice(rng, language, split)
    lang = language or str(rng.choice(list(LANGUAGES), p=_LANGUAGE_WEIGHTS))
    base = str(rng.choice(LANGUAGES[lang]))
    variants = VARIANTS if split is None else [v for v in VARIANTS if (v in HELDOUT_VARIANTS) == (split == "heldout")]
    variant = str(rng.choice(variants))
    return Voice(
        lang, f"{base}+{variant}", int(rng.integers(120, 215)), int(rng.integers(25, 80)), int(rng.integers(20, 90))
    )


_LANGUAGE_WEIGHTS = np.array([0.4, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])


def random_sentence(rng: np.random.Generator, language: str, words: tuple[int, int] = (4, 9)) -> str:
    vocab = _WORDS[language].split()
    n = int(rng.integers(words[0], words[1] + 1))
    picked = [vocab[i] for i in rng.integers(0, len(vocab), n)]
    if n > 5 and rng.random() < 0.5:  # a comma gives espeak a short pause mid-sentence
        picked[n // 2] += ","
    text = " ".join(picked)
    return text[0].upper() + text[1:] + str(rng.choice([".", ".", "!", "?"]))


def synthesize(text: str, voice: Voice) -> Speech:
    """Speak `text`; returns 16 kHz samples and phoneme intervals (seconds from the start).

    Deterministic: the same text and voice give the same samples in any process, whatever
    was spoken before (see the module note). A Festival voice is spoken by world/festival.py.
    """
    if voice.engine == "festival":
        from . import festival

        return festival.synthesize(text, voice)
    import soxr  # noqa: F401 - imported here, before the fork, not once per child

    eng = _engine()
    for _attempt in range(3):
        data = _speak_in_child(eng, text, voice)
        if data is not None:
            break
    else:
        raise FlowactError(f"espeak-ng did not answer for voice {voice.name!r} (3 tries)")
    return _finish_speech(data)


def _speak_in_child(eng, text: str, voice: Voice, timeout: float = 30.0) -> bytes | None:
    """One forked child speaks; None when it hung (a lock held by another thread at fork
    time can deadlock a child of a multi-threaded process: it is killed, the caller retries)."""
    import select
    import signal

    with eng.lock:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: speak from the clean state, send the result, leave without cleanup
            code = 0
            try:
                os.close(read_fd)
                # espeak's voices draw from libc's rand(): start it as a fresh process does, whatever
                # the parent did to it (ray.init, for one, moves it, and some voices spoke differently)
                ctypes.CDLL(None).srand(1)
                try:
                    result = ("ok", _speak(eng, text, voice))
                except FlowactError as exc:
                    result = ("error", str(exc))
                with os.fdopen(write_fd, "wb") as f:
                    f.write(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
            except BaseException:  # noqa: BLE001 - never return into the parent's code
                code = 1
            finally:
                os._exit(code)
        os.close(write_fd)
        ready, _, _ = select.select([read_fd], [], [], timeout)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(read_fd)
            return None
        with os.fdopen(read_fd, "rb") as f:
            data = f.read()
        os.waitpid(pid, 0)
    return data


def _finish_speech(data: bytes) -> Speech:
    if not data:
        raise FlowactError("espeak-ng crashed while synthesising speech")
    status, payload = pickle.loads(data)
    if status == "error":
        raise FlowactError(payload)
    return payload


def _speak(eng: _Espeak, text: str, voice: Voice) -> Speech:
    import soxr

    eng.chunks.clear()
    eng.events.clear()
    if eng.lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
        base = voice.name.split("+")[0]
        if eng.lib.espeak_SetVoiceByName(base.encode()) != 0:
            raise FlowactError(f"espeak-ng has no voice {voice.name!r}")
    eng.lib.espeak_SetParameter(_PARAM_RATE, voice.rate, 0)
    eng.lib.espeak_SetParameter(_PARAM_PITCH, voice.pitch, 0)
    eng.lib.espeak_SetParameter(_PARAM_RANGE, voice.pitch_range, 0)
    eng.lib.espeak_SetParameter(_PARAM_VOLUME, 100, 0)
    data = text.encode("utf-8")
    rc = eng.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
    eng.lib.espeak_Synchronize()
    if rc != 0:
        raise FlowactError(f"espeak-ng failed to synthesise (code {rc})")
    raw = np.concatenate(eng.chunks) if eng.chunks else np.zeros(0, np.int16)
    events = list(eng.events)
    audio = raw.astype(np.float32) / 32768.0
    total = len(audio) / eng.rate
    samples = soxr.resample(audio, eng.rate, SAMPLE_RATE).astype(np.float32) if len(audio) else audio
    phonemes = []
    for i, (pos, name) in enumerate(events):
        start = pos / eng.rate
        end = events[i + 1][0] / eng.rate if i + 1 < len(events) else total
        if end > start:
            phonemes.append(Phoneme(round(start, 4), round(min(end, total), 4), name))
    return Speech(samples, tuple(phonemes), text, voice)
