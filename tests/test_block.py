"""The one transformer block's pieces (model/block.py) and the ops they added to the dispatch point:
q and k normed in one call give the two calls' numbers; a bank known to be full needs no mask."""

import torch

import flowact_kernels as K
from flowact.model.block import BankAttention, BankView, Block, Prepared, prepare


def test_qk_norm_rope_is_two_rms_norm_ropes_bit_for_bit():
    g = torch.Generator().manual_seed(0)
    qkv = torch.randn(2, 4, 3, 7, 16, generator=g).permute(1, 0, 2, 3, 4)  # (3, b, h, n, d), not contiguous
    wq, wk = torch.rand(16, generator=g) + 0.5, torch.rand(16, generator=g) + 0.5
    cos, sin = torch.randn(7, 8, generator=g), torch.randn(7, 8, generator=g)
    q, k = K.qk_norm_rope(qkv, wq, wk, cos, sin)
    assert torch.equal(q, K.rms_norm_rope(qkv[0], wq, cos, sin)) and torch.equal(
        k, K.rms_norm_rope(qkv[1], wk, cos, sin)
    )


def test_a_bank_known_full_reads_as_one_with_every_slot_valid():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 4, 5, 16, generator=g) for _ in range(3))
    kb, vb = torch.randn(2, 4, 9, 16, generator=g), torch.randn(2, 4, 9, 16, generator=g)
    full = K.bank_attention(q, k, v, kb, vb, torch.ones(2, 9, dtype=torch.bool))
    torch.testing.assert_close(K.bank_attention(q, k, v, kb, vb, None), full)
    half = torch.ones(2, 9, dtype=torch.bool)
    half[:, :4] = False
    assert (K.bank_attention(q, k, v, kb, vb, half) - full).abs().max() > 1e-3  # the mask is read


def test_prepared_modulation_is_the_tensor_modulation():
    """The motion stream's folded modulation computes what the per-chunk tensor does."""
    torch.manual_seed(2)
    blk = Block(32, 4, 2.0, ("a",)).eval()
    for p in blk.parameters():
        torch.nn.init.normal_(p, std=0.2)
    x, ada = torch.randn(1, 6, 32), torch.randn(1, 6, 32)
    cos, sin = torch.ones(6, 4), torch.zeros(6, 4)
    empty = BankView(torch.zeros(1, 4, 0, 8), torch.zeros(1, 4, 0, 8), None, 0)
    with torch.no_grad():
        ((_, plain),) = blk([("a", x)], {"a": ada}, BankAttention(cos, sin, empty))
        folded = prepare(ada, blk.sets["a"].mod_table)
        assert isinstance(folded, Prepared)
        ((_, fast),) = blk([("a", x)], {"a": folded}, BankAttention(cos, sin, empty))
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=1e-5)
    assert (plain - x).abs().max() > 0.1  # the block did something
