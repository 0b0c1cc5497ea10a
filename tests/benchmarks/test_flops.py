"""The benchmark's useful-FLOPs formula: a hand-computed example and torch's own FLOP counter."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _load_flops():
    spec = importlib.util.spec_from_file_location("benchmark_flops", BENCHMARKS / "flops.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


flops = _load_flops()


def test_hand_computed_example():
    # d=2, f=4, V=10, one encoder and one decoder layer, one row of 3 source and 2 target tokens.
    #   per source token: encoder 4d^2 + 2df = 16 + 16 = 32, plus the decoder's cross-attention
    #     K and V over the encoder output, 2d^2 = 8: 40; times S=3 -> 120
    #   per target token: decoder 6d^2 + 2df = 24 + 16 = 40, LM head V*d = 20: 60; times T=2 -> 120
    #   dense: 6 * (120 + 120) = 1440
    #   attention: 12 * d * (enc 3*3 + dec self 2*2 + cross 3*2) = 24 * 19 = 456
    got = flops.training_flops(d_model=2, ffn_dim=4, vocab_size=10, encoder_layers=1,
                               decoder_layers=1, source_lengths=[3], target_lengths=[2])
    assert got == 1896
    # The old formula put cross-attention K/V on target tokens (8d^2 per target token):
    # 6 * (32*3 + 68*2) + 456 = 1848. The difference is 6 * 2d^2 * (S - T) = 48.
    assert got - 1848 == 6 * 2 * 2 * 2 * (3 - 2)


def test_cross_attention_kv_follows_source_tokens():
    # No encoder layers, no FFN, no vocabulary: what is left per token is attention weights.
    # One decoder layer, d=1: W_src = 2 (cross K, V), W_tgt = 6 (self Q,K,V,O + cross Q,O).
    def count(s: int, t: int) -> int:
        return flops.training_flops(d_model=1, ffn_dim=0, vocab_size=0, encoder_layers=0,
                                    decoder_layers=1, source_lengths=[s], target_lengths=[t])

    assert count(10, 1) == 6 * (2 * 10 + 6 * 1) + 12 * (1 * 1 + 10 * 1)  # 156 + 132 = 288
    assert count(10, 1) == 288
    # One more source token costs 6 * 2 (K, V) + 12 * t (one more key for each query).
    assert count(11, 1) - count(10, 1) == 12 + 12


def test_attention_pairs_are_per_row_not_per_batch():
    # Two rows (3 -> 1) and (1 -> 3): sum s*t = 3 + 3 = 6, not S*T = 16; sum s^2 = sum t^2 = 10.
    got = flops.training_flops(d_model=1, ffn_dim=0, vocab_size=0, encoder_layers=1,
                               decoder_layers=1, source_lengths=[3, 1], target_lengths=[1, 3])
    dense = 6 * ((4 + 2) * 4 + 6 * 4)  # W_src = 4 + 2 = 6 over S=4, W_tgt = 6 over T=4
    assert got == dense + 12 * (10 + 10 + 6)


def test_lengths_must_pair_up():
    with pytest.raises(ValueError, match="2 source lengths but 1 target"):
        flops.training_flops(d_model=2, ffn_dim=4, vocab_size=10, encoder_layers=1,
                             decoder_layers=1, source_lengths=[3, 4], target_lengths=[2])


def test_matches_torch_flop_counter_on_bart():
    """Forward + backward of a BART with eager attention (its matmuls are what torch counts),
    one unpadded row at a time: the formula is exact, including s != t."""
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import BartConfig, BartForConditionalGeneration

    d, f, vocab, enc, dec = 32, 64, 97, 2, 3
    config = BartConfig(vocab_size=vocab, d_model=d, encoder_layers=enc, decoder_layers=dec,
                        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=f,
                        decoder_ffn_dim=f, max_position_embeddings=64, pad_token_id=3,
                        attn_implementation="eager")
    torch.manual_seed(0)
    model = BartForConditionalGeneration(config)
    rows = [(7, 5), (2, 9)]
    with FlopCounterMode(display=False) as counter:
        for s, t in rows:
            source = torch.randint(5, vocab, (1, s))
            out = model(input_ids=source, attention_mask=torch.ones_like(source),
                        labels=torch.randint(5, vocab, (1, t)))
            out.loss.backward()
    expected = flops.training_flops(d_model=d, ffn_dim=f, vocab_size=vocab, encoder_layers=enc,
                                    decoder_layers=dec, source_lengths=[s for s, _ in rows],
                                    target_lengths=[t for _, t in rows])
    assert counter.get_total_flops() == expected
