"""Text encoder for behaviour prompts ("speaking calmly", "wave hello", "listening, nodding").

Words are lower-cased and hashed into `vocab` buckets (no tokenizer files to ship), embedded,
mixed by a small transformer, and pooled into a fixed number of tokens by learned queries.
A prompt is encoded once when it changes, never per denoising step.
"""

from __future__ import annotations

import re
import zlib

import torch
import torch.nn as nn

from ..config import TextConfig

MAX_WORDS = 32
_WORD = re.compile(r"[a-z0-9']+")


def tokenize(prompt: str, vocab: int) -> list[int]:
    """Stable hashed word ids in [1, vocab); 0 is padding. Empty prompt -> no ids."""
    words = _WORD.findall(prompt.lower())[:MAX_WORDS]
    return [1 + zlib.crc32(w.encode()) % (vocab - 1) for w in words]


class TextEncoder(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.embed = nn.Embedding(cfg.vocab, w, padding_idx=0)
        self.pos = nn.Parameter(torch.zeros(MAX_WORDS, w))
        layer = nn.TransformerEncoderLayer(w, max(1, w // 64), 4 * w, dropout=0.0, batch_first=True, norm_first=True)
        self.mixer = nn.TransformerEncoder(layer, cfg.depth, enable_nested_tensor=False)
        self.queries = nn.Parameter(torch.randn(cfg.tokens, w) * 0.02)
        self.pool = nn.MultiheadAttention(w, max(1, w // 64), batch_first=True)
        self.null = nn.Parameter(torch.zeros(cfg.tokens, w))  # the "no prompt" tokens (guidance)

    def ids(self, prompts: list[str], device=None) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [tokenize(p, self.cfg.vocab) or [0] for p in prompts]
        ids = torch.zeros(len(rows), MAX_WORDS, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
        return ids.to(device), ids.to(device) == 0

    def forward(self, prompts: list[str]) -> torch.Tensor:
        """-> (batch, tokens, width). Empty prompts give the learned null tokens."""
        dev = self.queries.device
        ids, pad = self.ids(prompts, dev)
        empty = pad.all(dim=1)
        pad = pad & ~empty[:, None]  # keep one (zero) slot attendable for empty rows
        x = self.embed(ids) + self.pos
        x = self.mixer(x, src_key_padding_mask=pad)
        q = self.queries[None].expand(len(prompts), -1, -1)
        tokens, _ = self.pool(q, x, x, key_padding_mask=pad, need_weights=False)
        return torch.where(empty[:, None, None], self.null[None].expand_as(tokens), tokens)
