"""The Ray-free serving core in one process: partial loading, batched encode/decode, parity, errors."""

from __future__ import annotations

import pytest
import torch
from serving_helpers import Reference

from multi_task_kobart.generation import DEFAULT_GENERATION
from multi_task_kobart.serving.runtime import (
    ENCODER_PARTS,
    SHARED,
    DecodeJob,
    DecoderCore,
    EncodeJob,
    EncoderCore,
    ModelMismatch,
    decoder_parts,
    load_model,
    loaded_bytes,
    model_fingerprint,
    set_torch_threads,
)
from multi_task_kobart.tasks import TASKS
from multi_task_kobart.tokenizer import encode_sources

SETTINGS = tuple(sorted(DEFAULT_GENERATION.kwargs().items()))


@pytest.fixture(scope="module")
def reference(tiny_checkpoint) -> Reference:
    return Reference(tiny_checkpoint)


@pytest.fixture(scope="module")
def cores(tiny_checkpoint, reference):
    model_id = model_fingerprint(tiny_checkpoint)
    encoder = EncoderCore(load_model(tiny_checkpoint, ENCODER_PARTS), model_id, "tok")
    decoder = DecoderCore(load_model(tiny_checkpoint, decoder_parts(TASKS)), model_id, TASKS)
    return encoder, decoder


def ids(reference: Reference, texts: list[str]) -> list[list[int]]:
    return encode_sources(reference.tokenizer, texts, max_length=512)[0]


def test_partial_loads_hold_exactly_their_parts(tiny_checkpoint, reference):
    whole = reference.model.state_dict()
    for parts in (ENCODER_PARTS, decoder_parts(["qa_generation"])):
        model = load_model(tiny_checkpoint, parts)
        loaded = {name: t for name, t in model.state_dict().items() if not t.is_meta}
        assert loaded and all(torch.equal(t, whole[name]) for name, t in loaded.items())
        assert model.decoders["style_transfer"].layers[0].fc1.weight.is_meta
        assert loaded_bytes(model) < loaded_bytes(reference.model)
    decoder = load_model(tiny_checkpoint, decoder_parts(["qa_generation"]))
    assert decoder.decoders["qa_generation"].embed_tokens.weight is decoder.shared.weight  # still tied
    with pytest.raises(ValueError, match="no decoder for task 'poetry'"):
        load_model(tiny_checkpoint, ["shared", "decoders.poetry"])


def test_requests_batched_together_keep_their_rows_and_match_in_process_generate(cores, reference):
    encoder, decoder = cores
    requests = [["빨리 와"], ["이거 좀 도와주세요 정말 급해요", "응"], ["질문: 서울의 인구는?"]]
    encoded = encoder.encode_batch([EncodeJob(ids(reference, texts), ("role_generation",), tokenizer_id="tok")
                                    for texts in requests])
    assert [e.mask.shape[0] for e in encoded] == [1, 2, 1]
    assert [e.mask.shape[1] for e in encoded] == [max(map(len, ids(reference, t))) for t in requests]
    assert all(list(e.parts) == [SHARED] and e.stats["batch_requests"] == 3 for e in encoded)
    decoded = decoder.decode_batch([DecodeJob(e, "role_generation", None, SETTINGS) for e in encoded])
    flat = [row for result in decoded for row in result.token_ids]
    assert flat == reference.generate([t for texts in requests for t in texts], "role_generation")


def test_one_failing_group_does_not_fail_the_others(cores, reference):
    encoder, decoder = cores
    [encoded] = encoder.encode_batch([EncodeJob(ids(reference, ["빨리 와"]), (), tokenizer_id="tok")])
    broken = tuple(sorted({**dict(SETTINGS), "num_beams": 2, "num_return_sequences": 3}.items()))
    good, bad = decoder.decode_batch([DecodeJob(encoded, "style_transfer", None, SETTINGS),
                                      DecodeJob(encoded, "style_transfer", None, broken)])
    assert good.token_ids == reference.generate(["빨리 와"], "style_transfer")
    assert isinstance(bad, Exception)


def test_checks_refuse_foreign_states_tokens_and_rows(cores, reference):
    encoder, decoder = cores
    with pytest.raises(ModelMismatch, match="tokenizer"):
        encoder.check(EncodeJob([[0, 1]], tokenizer_id="other"))
    with pytest.raises(ValueError, match="non-empty"):
        encoder.check(EncodeJob([[]], tokenizer_id="tok"))
    [encoded] = encoder.encode_batch([EncodeJob(ids(reference, ["빨리 와"]), tokenizer_id="tok")])
    decoder.check(DecodeJob(encoded, "qa_generation", [0]))
    with pytest.raises(ValueError, match=r"rows \[3\] were not encoded"):
        decoder.check(DecodeJob(encoded, "qa_generation", [3]))
    encoded.model_id = "someone-else"
    with pytest.raises(ModelMismatch, match="someone-else"):
        decoder.check(DecodeJob(encoded, "qa_generation"))


def test_adapters_encode_once_per_task_and_route_on_the_bare_encoder(adapter_checkpoint):
    reference = Reference(adapter_checkpoint)
    encoder = EncoderCore(load_model(adapter_checkpoint, ENCODER_PARTS), "m", "tok")
    texts = ["이거 좀 도와주세요", "[친구] 주말에 뭐해?", "질문: 서울의 인구는?"]
    explicit, routed = encoder.encode_batch([EncodeJob(ids(reference, texts), ("style_transfer", "qa_generation"),
                                                       tokenizer_id="tok"),
                                             EncodeJob(ids(reference, texts), route=True, tokenizer_id="tok")])
    assert sorted(explicit.parts) == ["qa_generation", "style_transfer"] and explicit.passes == 2
    input_ids, mask = reference.batch(texts)
    for task, part in explicit.parts.items():
        expected = reference.model.encode(input_ids, mask, task).last_hidden_state
        assert torch.allclose(torch.from_numpy(part.states), expected, atol=1e-5)
    assert routed.routed == reference.predict_task(texts)
    assert routed.passes == 1 + len(set(routed.routed))


def test_torch_threads_follow_the_cpu_share():
    before = torch.get_num_threads()
    try:
        assert set_torch_threads(0.25) == 1 and torch.get_num_threads() == 1
        assert set_torch_threads(1.5) == 2 and set_torch_threads(0.5, threads=3) == 3
    finally:
        torch.set_num_threads(before)
