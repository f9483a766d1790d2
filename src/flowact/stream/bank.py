"""The structured memory bank: fixed-capacity cached keys/values, one region per role. One type for
both models: the video MMDiT's (a slot = one latent frame's patch tokens, model/layout.py
`TokenLayout`) and the motion MMDiT's (a slot = one video frame's motion token, model/motion.py
`MotionLayout`); the layout gives the slot sizes and the RoPE tables.

Layout along the token axis, in slots of `slot_tokens` tokens each:

    [ reference (1) | long-term (L) | short-term (C) | current (C) ]

- reference: the reference image's K/V, written once per stream;
- long-term: sparse past latent frames, right-aligned (newest next to short-term), kept by
  a stride policy: one of every `long_term_stride` frames leaving short-term memory is
  admitted, the oldest falls off;
- short-term: the previous chunk, for motion continuity;
- current: where the memory pass writes the chunk just generated; `commit()` moves it
  to short-term. It is never visible to attention (masked).

Every slot has a fixed time position (reference 0, long-term 1..L, short-term L+1..L+C;
the chunk being denoised sits at L+C+1..L+2C), so positions stay bounded however long the
stream runs and every shape is static. Keys are stored already rotated at their slot's
position; a frame that moves slot is re-rotated by the position delta
(`bank_gather_rope`: rotations compose exactly).
"""

from __future__ import annotations

import torch

import flowact_kernels as K

from ..config import Preset
from ..model.block import BankView, BankWrite
from ..model.layout import TokenLayout


class MemoryBank:
    def __init__(
        self,
        layout,
        depth: int,
        heads: int,
        head_dim: int,
        batch: int = 1,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        """`layout`: a `TokenLayout` or `MotionLayout` (slot sizes, the long-term policy, RoPE tables);
        `heads`: how many attention heads the bank holds (a sequence-parallel rank holds only its share,
        stream/seqpar.py). Every operation is per head."""
        self.layout = layout
        self.T = layout.slot_tokens
        self.C = layout.chunk_slots
        self.L = layout.long_term
        self.stride = layout.long_term_stride
        self.slots = 1 + self.L + 2 * self.C
        self.capacity = self.slots * self.T
        self.ref_slot, self.lt_slot, self.st_slot, self.cur_slot = 0, 1, 1 + self.L, 1 + self.L + self.C
        shape = (depth, batch, heads, self.capacity, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.valid = torch.zeros(batch, self.capacity, dtype=torch.bool, device=device)
        self.device = torch.device(device)
        # bookkeeping (host-side ints, no tensor syncs): stream index of each long-term slot
        self.long_term: list[int | None] = [None] * self.L
        self.short_term: list[int] | None = None
        self.admitted = 0  # slots' frames that have left short-term memory

        lay = layout
        self._ref_write = BankWrite(0, *lay.slot_tables([lay.reference_time], device))
        st_times = [lay.short_term_time(i) for i in range(self.C)]
        self._chunk_write = BankWrite(self.cur_slot * self.T, *lay.slot_tables(st_times, device))
        # rotation deltas: long-term shift (-1 frame) and short-term frame i -> newest long-term slot
        self._shift = lay.shift_tables(-1.0, device)
        self._st_to_lt = [lay.shift_tables(lay.newest_long_term_time - t, device) for t in st_times]
        self._slot_index = torch.arange(self.capacity, device=device).view(self.slots, self.T)

    @classmethod
    def of(
        cls,
        preset: Preset,
        batch: int = 1,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        heads: int | None = None,
    ) -> "MemoryBank":
        """The video MMDiT's bank for a preset (`heads`: default all)."""
        m = preset.model
        lay = TokenLayout.of(preset)
        return cls(lay, m.depth, m.heads if heads is None else heads, preset.head_dim, batch, device, dtype)

    # -- what passes see ---------------------------------------------------------------
    def view(self) -> BankView:
        return BankView(self.k, self.v, self.valid, self.cur_slot * self.T)

    def reference_write(self) -> BankWrite:
        return self._ref_write

    def chunk_write(self) -> BankWrite:
        return self._chunk_write

    # -- state changes -------------------------------------------------------------------
    def reset(self) -> None:
        self.valid.zero_()
        self.long_term = [None] * self.L
        self.short_term = None
        self.admitted = 0

    def snapshot(self) -> tuple:
        """Everything `commit` changes, copied: `restore` takes the bank back to it (a live stream redoing
        its newest chunk)."""
        return (self.k.clone(), self.v.clone(), self.valid.clone(), list(self.long_term),
                None if self.short_term is None else list(self.short_term), self.admitted)  # fmt: skip

    def restore(self, state: tuple) -> None:
        k, v, valid, long_term, short_term, admitted = state
        self.k.copy_(k)
        self.v.copy_(v)
        self.valid.copy_(valid)
        self.long_term = list(long_term)
        self.short_term = None if short_term is None else list(short_term)
        self.admitted = admitted

    def mark_reference(self) -> None:
        self.valid[:, : self.T] = True

    def commit(self, first_latent: int) -> None:
        """The chunk in `current` (stream latent frames first_latent..+C) becomes short-term;
        the frames it displaces go through the long-term policy."""
        if self.short_term is not None:
            for i, frame in enumerate(self.short_term):
                if self.L and self.admitted % self.stride == 0:
                    self._admit_long_term(i, frame)
                self.admitted += 1
        # short-term and current are contiguous regions of equal size: one copy each
        st = slice(self.st_slot * self.T, (self.st_slot + self.C) * self.T)
        cur = slice(self.cur_slot * self.T, (self.cur_slot + self.C) * self.T)
        self.k[:, :, :, st] = self.k[:, :, :, cur]
        self.v[:, :, :, st] = self.v[:, :, :, cur]
        self.valid[:, st] = True
        self.short_term = list(range(first_latent, first_latent + self.C))

    @property
    def full(self) -> bool:
        """Every readable slot holds a frame (known on the host: no device sync)."""
        return self.short_term is not None and all(f is not None for f in self.long_term)

    def _admit_long_term(self, st_index: int, frame: int) -> None:
        occupied = [j for j, f in enumerate(self.long_term) if f is not None]
        movers = [j for j in occupied if j > 0]  # slot 0's frame (if any) falls off
        # all layers at once: (depth, batch, ...) viewed as one batch axis
        kb, vb = self.k.flatten(0, 1), self.v.flatten(0, 1)
        if movers:
            src = self._slot_index[[self.lt_slot + j for j in movers]].reshape(-1)
            cos, sin = self._shift
            n = len(movers)
            K.bank_gather_rope(kb, vb, src, src - self.T, cos.repeat(n, 1), sin.repeat(n, 1))
        src = self._slot_index[self.st_slot + st_index]
        dst = self._slot_index[self.lt_slot + self.L - 1]
        K.bank_gather_rope(kb, vb, src, dst, *self._st_to_lt[st_index])
        new = [None] * self.L
        for j in movers:
            new[j - 1] = self.long_term[j]
        new[self.L - 1] = frame
        self.long_term = new
        lt_valid = torch.tensor([f is not None for f in new], device=self.device).repeat_interleave(self.T)
        self.valid[:, self.lt_slot * self.T : (self.lt_slot + self.L) * self.T] = lt_valid

    def nbytes(self) -> int:
        return self.k.numel() * self.k.element_size() * 2 + self.valid.numel()
