from flowact.config import load_preset
from flowact.stream.cost import chunk_cost


def test_r1_480p_one_chunk_step_on_the_meta_device():
    p = load_preset("r1-480p")
    cost = chunk_cost(p)  # builds the 1.4B model on the meta device: no memory, no compute
    assert 1.0e9 <= cost.params["dit"] <= 2.0e9
    c = p.stream.chunk_latents
    assert cost.shapes["latents"] == (1, 16, c, 60, 104)
    assert cost.shapes["velocity"] == cost.shapes["latents"]
    assert cost.shapes["frames"] == (1, 3, 4 * c, 480, 832)
    assert cost.shapes["audio_encoder_out"] == (1, c * 4, p.audio.width)
    assert cost.shapes["text_tokens"] == (1, p.text.tokens, p.text.width)
    bank_tokens = (1 + p.stream.long_term + 2 * c) * 1560
    assert cost.shapes["bank_k"] == (p.model.depth, 1, p.model.heads, bank_tokens, p.head_dim)
    assert cost.chunk_tokens == c * 1560 + c * 4 + p.text.tokens
    # analytic: linear layers (12 w^2 weights per token per block, 2 FLOPs per MAC) plus
    # attention (QK^T and AV) over the visible bank (reference, long-term, short-term) + chunk
    n, w, depth = cost.chunk_tokens, p.model.width, p.model.depth
    visible = (1 + p.stream.long_term + c) * 1560 + n
    expected = 2 * n * 12 * w * w * depth + 4 * n * visible * w * depth
    assert abs(cost.flops_per_pass - expected) / expected < 0.02
    assert cost.flops_per_chunk > 4 * cost.flops_per_pass  # 3 steps + memory pass + decode


def test_toon_128_cost_fits_the_cpu_budget_analytically():
    cost = chunk_cost(load_preset("toon-128"))
    assert sum(cost.params.values()) < 20e6  # ships in bf16 within the package's 48 MB budget
    assert cost.chunk_tokens == 144 and cost.bank_tokens == 576


def test_the_package_weights_stay_under_the_48_mb_budget():
    """Every weights file the package ships: its own models and MediaPipe's face models."""
    from pathlib import Path

    import flowact

    root = Path(flowact.__file__).parent
    files = [*(root / "assets").glob("*.safetensors"), *(root / "photo" / "models").glob("*.tflite")]
    sizes = {p.name: p.stat().st_size for p in files}
    assert {"toon-128.safetensors", "judge.safetensors", "motion.safetensors", "face_landmark.tflite"} <= set(sizes)
    assert sum(sizes.values()) < 48e6, sizes
