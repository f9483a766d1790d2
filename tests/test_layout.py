"""The token layout: slot times and positions, as the bank, the stream and training use them."""

import torch

from flowact.config import load_preset
from flowact.model.layout import TokenLayout
from flowact.stream.bank import MemoryBank
from flowact.stream.generator import StreamGenerator
from flowact.model import FlowActModel

from helpers import TINY


def test_slot_times_follow_the_bank_regions():
    p = load_preset(TINY)
    lay = TokenLayout.of(p)
    L, C = p.stream.long_term, p.stream.chunk_latents
    assert lay.reference_time == 0.0 and lay.newest_long_term_time == L
    assert [lay.short_term_time(i) for i in range(C)] == [L + 1.0 + i for i in range(C)]
    assert lay.chunk_time == 1 + L + C
    # a training clip's last chunk sits where inference puts the chunk being made
    assert lay.train_first_time(3 * C) + 2 * C == lay.chunk_time


def test_chunk_positions_are_video_then_audio_then_text():
    p = load_preset(TINY)
    lay = TokenLayout.of(p)
    gh, gw = lay.grid
    pos = lay.chunk(10.0)
    n_video, n_audio = p.stream.chunk_latents * gh * gw, p.stream.chunk_latents * lay.audio_per_latent
    assert pos.shape == (n_video + n_audio + lay.text_tokens, 3)
    video, audio, text = pos[:n_video], pos[n_video : n_video + n_audio], pos[n_video + n_audio :]
    assert video[:, 0].tolist() == [10.0 + f for f in range(p.stream.chunk_latents) for _ in range(gh * gw)]
    assert video[: gh * gw, 1:].tolist() == [[r, c] for r in range(gh) for c in range(gw)]
    assert audio[:, 0].tolist() == [
        10.0 + f for f in range(p.stream.chunk_latents) for _ in range(lay.audio_per_latent)
    ]
    assert (audio[:, 1:] == 0).all() and (text[:, 0] == 10.0).all() and (text[:, 1:] == 0).all()


def test_stream_and_bank_take_their_tables_from_the_layout():
    p = load_preset(TINY)
    lay = TokenLayout.of(p)
    m = FlowActModel(p)
    gen = StreamGenerator(m)
    cos, sin = lay.tables(lay.chunk(lay.chunk_time))
    assert torch.equal(gen.cos, cos) and torch.equal(gen.sin, sin)
    bank = MemoryBank.of(p)
    st = lay.frames([lay.short_term_time(i) for i in range(p.stream.chunk_latents)])
    assert torch.equal(bank.chunk_write().cos, lay.tables(st)[0])
    # a key moved from short-term frame 0 to the newest long-term slot is rotated by that time delta
    delta = lay.newest_long_term_time - lay.short_term_time(0)
    assert torch.equal(bank._st_to_lt[0][0], lay.tables(lay.time_shift(delta))[0])
