"""Useful training FLOPs of an encoder-decoder (BART-shaped) model, counted from real lengths.

One training step is forward (2 FLOPs per weight per token) + backward (4): 6 per weight
per token for every matmul weight, plus the attention products, which have no weights:

    FLOPs = 6 * (W_src * S + W_tgt * T)
          + 12 * d * (L_enc * sum s_i^2 + L_dec * sum t_i^2 + L_dec * sum s_i * t_i)

    W_src = L_enc * (4 d^2 + 2 d f)   encoder: Q, K, V, O + FFN, per source token
          + L_dec * 2 d^2             decoder cross-attention K, V: they project the encoder
                                      output, so they run once per SOURCE token per decoder layer
    W_tgt = L_dec * (6 d^2 + 2 d f)   decoder: self-attention Q, K, V, O, cross-attention Q, O,
          + V * d                     FFN, per target token; the (tied) LM head

s_i / t_i are the real (non-padding) source / target lengths of row i, S = sum s_i,
T = sum t_i. The attention term is scores (Q K^T) + weighted values, 2 * 2 * d per query-key
pair forward, x3 for training; decoder self-attention is counted over the full t x t square
(what the kernels compute), cross-attention over t x s. Embedding look-ups, norms, softmax,
biases and the loss are not matmuls and are left out. Padding never counts: it is waste.
"""

from __future__ import annotations

from typing import Sequence

FORMULA = ("6*(W_src*S + W_tgt*T) + 12*d*(L_enc*sum s^2 + L_dec*sum t^2 + L_dec*sum s*t); "
           "W_src = L_enc*(4d^2 + 2df) + L_dec*2d^2 (cross-attention K,V over source tokens), "
           "W_tgt = L_dec*(6d^2 + 2df) + V*d; real (non-padding) tokens only")


def training_flops(*, d_model: int, ffn_dim: int, vocab_size: int, encoder_layers: int,
                   decoder_layers: int, source_lengths: Sequence[int],
                   target_lengths: Sequence[int]) -> int:
    """Useful FLOPs of one forward + backward over rows of these real lengths (formula above)."""
    if len(source_lengths) != len(target_lengths):
        raise ValueError(f"{len(source_lengths)} source lengths but {len(target_lengths)} target lengths")
    d, f = d_model, ffn_dim
    per_source_token = encoder_layers * (4 * d * d + 2 * d * f) + decoder_layers * 2 * d * d
    per_target_token = decoder_layers * (6 * d * d + 2 * d * f) + vocab_size * d
    dense = 6 * (per_source_token * sum(source_lengths) + per_target_token * sum(target_lengths))
    pairs = (encoder_layers * sum(s * s for s in source_lengths)
             + decoder_layers * sum(t * t for t in target_lengths)
             + decoder_layers * sum(s * t for s, t in zip(source_lengths, target_lengths)))
    return dense + 12 * d * pairs
