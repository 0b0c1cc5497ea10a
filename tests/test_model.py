"""MultiTaskKoBART: the SPEC snippet, weight tying, parity with transformers, loading, freezing, routing.

Everything runs on the tiny preset except the SPEC snippet and the parameter count, which need
KoBART-base dimensions (the count is taken on the meta device, so it allocates nothing).
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.distributed as dist
from safetensors import safe_open
from torch.nn.parallel import DistributedDataParallel
from transformers import BartConfig, BartForConditionalGeneration, BartModel, PreTrainedTokenizerFast

from multi_task_kobart import MultiTaskKoBART as LazyExport
from multi_task_kobart.model import MultiTaskKoBART, MultiTaskKoBARTConfig
from multi_task_kobart.tasks import TASKS

VOCAB = 120
SOURCE = torch.tensor([[0, 15, 27, 39, 44, 51, 1], [0, 62, 70, 1, 3, 3, 3]])
MASK = (SOURCE != 3).long()
LABELS = torch.tensor([[20, 21, 22, 1], [30, 1, -100, -100]])
# Random models echo their input token (tied embeddings + residuals), i.e. end right after </s>;
# forcing a few tokens makes greedy comparisons cover real decoding steps.
GREEDY = dict(min_new_tokens=4, max_new_tokens=8)


def tiny(seed: int = 0, **overrides) -> MultiTaskKoBART:
    torch.manual_seed(seed)
    return MultiTaskKoBART(MultiTaskKoBARTConfig.tiny(VOCAB, **overrides)).eval()


def randomize_adapters(model: MultiTaskKoBART, seed: int = 1) -> None:
    """Fresh adapters are a no-op (B = 0); give them weight so adapter tests mean something."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.adapters.named_parameters():
            if name.endswith("lora_B"):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.2)


def tied_pointers(model: MultiTaskKoBART) -> set[int]:
    stacks = [model.encoder, *model.decoders.values()]
    pointers = {model.shared.weight.data_ptr()} | {s.embed_tokens.weight.data_ptr() for s in stacks}
    return pointers | {model.task_view(task).lm_head.weight.data_ptr() for task in TASKS}


# ------------------------------------------------------------------------------ the user's API
#: The user's snippet, verbatim from SPEC.md ("The Python API the user expects").
SPEC_SNIPPET = """\
from multi_task_kobart import MultiTaskKoBART
from transformers import PreTrainedTokenizerFast

tokenizer = PreTrainedTokenizerFast.from_pretrained('gogamza/kobart-base-v1')  # or a local path
model = MultiTaskKoBART()            # also: MultiTaskKoBART.from_pretrained(path)
inputs = tokenizer("이거 좀 도와주세요.", return_tensors="pt")
output = model.generate(input_ids=inputs['input_ids'], task='style_transfer', max_length=50)
print(tokenizer.decode(output[0], skip_special_tokens=True))

model.freeze_encoder()                                   # train decoders only
params = model.get_decoder_parameters('style_transfer')  # one task's decoder parameters
"""
HUB_ID = "'gogamza/kobart-base-v1'"


def test_spec_snippet_is_the_one_in_spec_md(spec_md) -> None:
    section = spec_md.read_text(encoding="utf-8").split("### The Python API the user expects", 1)[1]
    assert section.split("```python\n", 1)[1].split("```", 1)[0] == SPEC_SNIPPET


@pytest.mark.parametrize("which", ["bundled", "kobart"])
def test_spec_snippet_runs_as_written(which, request, capsys) -> None:
    """The snippet itself, with only the hub id replaced by a local tokenizer folder."""
    from multi_task_kobart.tokenizer import BUNDLED_TOKENIZER_DIR

    folder = (BUNDLED_TOKENIZER_DIR if which == "bundled"
              else request.getfixturevalue("kobart_tokenizer_json").parent)
    assert SPEC_SNIPPET.count(HUB_ID) == 1
    namespace: dict = {}
    exec(compile(SPEC_SNIPPET.replace(HUB_ID, repr(str(folder))), "SPEC.md", "exec"), namespace)

    model, output, tokenizer = namespace["model"], namespace["output"], namespace["tokenizer"]
    assert (model.config.vocab_size, model.config.d_model) == (30000, 768)
    assert output.dtype == torch.long and output.shape[0] == 1 and 2 <= output.shape[1] <= 50
    assert output[0, 0].item() == 1  # decoding starts from </s>, as in KoBART
    printed = capsys.readouterr().out
    assert printed == tokenizer.decode(output[0], skip_special_tokens=True) + "\n"
    params = namespace["params"]
    assert all(p.requires_grad for p in params) and not model.shared.weight.requires_grad
    assert sum(p.numel() for p in params) == model.num_parameters()["per_task"]["style_transfer"]


def test_token_cross_entropy_ignores_label_pad_and_upcasts() -> None:
    from multi_task_kobart.model import token_cross_entropy
    from multi_task_kobart.tokenizer import LABEL_PAD

    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5)
    labels = torch.tensor([[1, 4, LABEL_PAD], [0, LABEL_PAD, LABEL_PAD]])
    keep = labels != LABEL_PAD
    log_probs = logits.log_softmax(-1)[keep].gather(-1, labels[keep][:, None])[:, 0]
    torch.testing.assert_close(token_cross_entropy(logits, labels, reduction="sum"), -log_probs.sum())
    torch.testing.assert_close(token_cross_entropy(logits, labels), -log_probs.mean())
    per_position = token_cross_entropy(logits, labels, reduction="none")
    assert per_position.shape == (6,) and per_position[~keep.reshape(-1)].eq(0).all()
    smoothed = token_cross_entropy(logits, labels, label_smoothing=0.1)
    manual = 0.9 * -log_probs.mean() + 0.1 * -logits.log_softmax(-1)[keep].mean()
    torch.testing.assert_close(smoothed, manual)
    half = token_cross_entropy(logits.bfloat16(), labels)
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, token_cross_entropy(logits.bfloat16().float(), labels))
    with pytest.raises(ValueError, match="reduction='avg'; allowed: 'mean', 'sum', 'none'"):
        token_cross_entropy(logits, labels, reduction="avg")
    with pytest.raises(ValueError, match=r"logits \(2, 3, 5\) and labels \(2, 2\) do not match"):
        token_cross_entropy(logits, labels[:, :2])


def test_base_parameter_count_is_tied() -> None:
    model = MultiTaskKoBART(device="meta")
    counts = model.num_parameters()
    assert counts["embedding"] == 30000 * 768
    assert counts["router"] == 768 * 4 + 4
    assert all(n == 57_501_696 for n in counts["per_task"].values())
    assert counts["total"] - counts["router"] == 296_365_056  # ~296M; untied copies would be ~388M
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    assert LazyExport is MultiTaskKoBART


def test_config_round_trip_and_validation(tmp_path) -> None:
    config = MultiTaskKoBARTConfig.tiny(VOCAB, adapter_rank=4)
    config.save(tmp_path)
    assert MultiTaskKoBARTConfig.load(tmp_path) == config
    assert config.to_bart_config().forced_eos_token_id is None
    with pytest.raises(ValueError, match="not divisible"):
        MultiTaskKoBARTConfig.tiny(VOCAB, attention_heads=3)
    with pytest.raises(ValueError, match="style_transfer"):
        MultiTaskKoBARTConfig.tiny(VOCAB, tasks=("translation",))
    with pytest.raises(ValueError, match="bogus"):
        MultiTaskKoBARTConfig.from_dict({**config.to_dict(), "bogus": 1})


def test_unknown_task_lists_valid_names() -> None:
    model = tiny()
    calls = [lambda: model(input_ids=SOURCE, attention_mask=MASK, task="summary", labels=LABELS),
             lambda: model.generate(input_ids=SOURCE, task="summary"),
             lambda: model.get_decoder_parameters("summary"), lambda: model.task_view("summary")]
    for call in calls:
        with pytest.raises(ValueError) as info:
            call()
        assert "'summary'" in str(info.value) and all(task in str(info.value) for task in TASKS)


# ------------------------------------------------------------------------------ tying
def test_one_embedding_matrix_shared_by_everything() -> None:
    model = tiny()
    assert len(tied_pointers(model)) == 1
    assert model._views["style_transfer"] not in list(model.modules())
    assert not any(key.startswith("_views") for key in model.state_dict())
    view = model.task_view("qa_generation")
    assert view.model.decoder is model.decoders["qa_generation"] and view.model.encoder is model.encoder
    assert all(t.device.type == "cpu" for t in [*view.parameters(), *view.buffers()])
    assert torch.count_nonzero(view.final_logits_bias) == 0
    assert torch.count_nonzero(model.shared.weight[model.config.pad_token_id]) == 0


def test_tie_survives_save_load_and_optimizer_step(tmp_path) -> None:
    model = tiny()
    model.save_pretrained(tmp_path)
    with safe_open(tmp_path / "model.safetensors", "pt") as weights:  # the matrix is stored once
        assert sum(weights.get_slice(k).get_shape() == [VOCAB, 64] for k in weights.keys()) == 1
    loaded = MultiTaskKoBART.from_pretrained(tmp_path)
    saved, reloaded = model.state_dict(), loaded.state_dict()
    assert saved.keys() == reloaded.keys() and all(torch.equal(saved[k], reloaded[k]) for k in saved)
    assert len(tied_pointers(loaded)) == 1
    loaded.train()
    optimizer = torch.optim.AdamW(loaded.parameters(), lr=1e-2)
    loaded(input_ids=SOURCE, attention_mask=MASK, task="role_generation", labels=LABELS).loss.backward()
    optimizer.step()
    assert len(tied_pointers(loaded)) == 1
    assert not torch.equal(loaded.shared.weight, model.shared.weight)
    for stack in [loaded.encoder, *loaded.decoders.values()]:
        assert torch.equal(stack.embed_tokens.weight, loaded.shared.weight)


def test_deepcopy_keeps_tie_and_adapter_hooks() -> None:
    model = tiny(adapter_rank=4)
    randomize_adapters(model)
    clone = copy.deepcopy(model)
    assert len(tied_pointers(clone)) == 1 and clone.shared.weight.data_ptr() != model.shared.weight.data_ptr()
    with torch.no_grad():
        for param in clone.adapters.parameters():
            param.zero_()
    with torch.no_grad():  # the clone's hooks must read the clone's (now zero) adapters
        plain = clone.encode(SOURCE, MASK).last_hidden_state
        adapted = clone.encode(SOURCE, MASK, task="style_transfer").last_hidden_state
        original = model.encode(SOURCE, MASK, task="style_transfer").last_hidden_state
    assert torch.equal(plain, adapted) and not torch.allclose(adapted, original)


# ------------------------------------------------------------------------------ parity with transformers
@pytest.mark.parametrize("adapter_rank", [0, 4])
def test_view_and_export_match_model(tmp_path, adapter_rank: int) -> None:
    model = tiny(adapter_rank=adapter_rank)
    if adapter_rank:
        randomize_adapters(model)
    for task in TASKS:
        export_dir = model.export_task(task, tmp_path / task)
        exported = BartForConditionalGeneration.from_pretrained(export_dir).eval()
        assert type(exported) is BartForConditionalGeneration
        assert exported.generation_config.forced_eos_token_id is None
        assert exported.generation_config.decoder_start_token_id == 1
        with torch.no_grad():
            ours = model(input_ids=SOURCE, attention_mask=MASK, task=task, labels=LABELS)
            view = model.task_view(task)(input_ids=SOURCE, attention_mask=MASK, labels=LABELS)
            theirs = exported(input_ids=SOURCE, attention_mask=MASK, labels=LABELS)
        torch.testing.assert_close(view.logits, ours.logits, atol=1e-5, rtol=0)
        torch.testing.assert_close(theirs.logits, ours.logits, atol=1e-5, rtol=0)
        generated = model.generate(input_ids=SOURCE, attention_mask=MASK, task=task, **GREEDY)
        assert generated.shape[1] >= 5
        assert torch.equal(generated, exported.generate(input_ids=SOURCE, attention_mask=MASK, **GREEDY))
    if adapter_rank:  # the merged export really carries the adapter
        plain = model.encoder.layers[0].self_attn.q_proj.weight
        assert not torch.allclose(exported.model.encoder.layers[0].self_attn.q_proj.weight, plain)


def test_forward_shifts_labels_and_ignores_padding() -> None:
    model = tiny()
    with torch.no_grad():
        out = model(input_ids=SOURCE, attention_mask=MASK, task="dialogue_summarization", labels=LABELS)
        shifted = torch.tensor([[1, 20, 21, 22], [1, 30, 1, 3]])
        explicit = model(input_ids=SOURCE, attention_mask=MASK, task="dialogue_summarization",
                         decoder_input_ids=shifted)
    assert torch.equal(out.logits, explicit.logits) and explicit.loss is None
    keep = LABELS != -100
    manual = torch.nn.functional.cross_entropy(out.logits[keep], LABELS[keep])
    torch.testing.assert_close(out.loss, manual)
    assert out.router_logits.shape == (2, len(TASKS))


@pytest.mark.parametrize("adapter_rank", [0, 4])
def test_generate_from_encoder_outputs_matches_generate(adapter_rank: int) -> None:
    model = tiny(adapter_rank=adapter_rank)
    if adapter_rank:
        randomize_adapters(model)
    task = "role_generation"
    with torch.no_grad():
        encoded = model.encode(SOURCE, MASK, task=task)
    for kwargs in (GREEDY, dict(GREEDY, num_beams=3)):
        expected = model.generate(input_ids=SOURCE, attention_mask=MASK, task=task, **kwargs)
        from_states = model.generate(encoder_outputs=encoded, attention_mask=MASK, task=task, **kwargs)
        assert torch.equal(expected, from_states)
    assert encoded.last_hidden_state.shape[0] == 2  # generate() did not expand the caller's object


def test_generate_batches_sampling_and_dtype_change() -> None:
    model = tiny()
    torch.manual_seed(3)
    sampled = model.generate(input_ids=SOURCE, attention_mask=MASK, task="qa_generation", do_sample=True,
                             top_k=20, temperature=0.9, num_return_sequences=2, **GREEDY)
    assert sampled.shape[0] == 4
    model.to(torch.float64)  # the cached view must follow (its bias is its own buffer)
    assert model.task_view("qa_generation").final_logits_bias.dtype == torch.float64
    assert model.generate(input_ids=SOURCE, attention_mask=MASK, task="qa_generation", **GREEDY).shape[0] == 2


# ------------------------------------------------------------------------------ loading
@pytest.mark.parametrize("bart_class", [BartForConditionalGeneration, BartModel])
def test_from_bart_copies_weights_exactly(tmp_path, bart_class) -> None:
    torch.manual_seed(5)
    config = BartConfig(vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=1,
                        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
                        decoder_ffn_dim=64, max_position_embeddings=64, pad_token_id=3, bos_token_id=0,
                        eos_token_id=1, decoder_start_token_id=1)
    bart = bart_class(config).eval()
    bart.save_pretrained(tmp_path)
    base = bart.model if bart_class is BartForConditionalGeneration else bart
    model = MultiTaskKoBART.from_bart(tmp_path, adapter_rank=2)
    assert (model.config.d_model, model.config.decoder_layers, model.config.adapter_rank) == (32, 1, 2)
    assert torch.equal(model.shared.weight, base.shared.weight)
    for key, tensor in base.encoder.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[key], tensor), key
    for decoder in model.decoders.values():
        for key, tensor in base.decoder.state_dict().items():
            assert torch.equal(decoder.state_dict()[key], tensor), key
    assert len(tied_pointers(model)) == 1
    if bart_class is BartForConditionalGeneration:  # fresh adapters are a no-op: same logits as BART
        with torch.no_grad():
            ours = model(input_ids=SOURCE, attention_mask=MASK, task="qa_generation", labels=LABELS).logits
            theirs = bart(input_ids=SOURCE, attention_mask=MASK, labels=LABELS).logits
        torch.testing.assert_close(ours, theirs)


# ------------------------------------------------------------------------------ training behaviour
def test_freeze_encoder_trains_decoders_only() -> None:
    model = tiny().train()
    model.freeze_encoder()
    frozen = {id(p) for p in model.encoder_parameters()}
    assert id(model.shared.weight) in frozen and not any(p.requires_grad for p in model.encoder_parameters())
    before = copy.deepcopy(model.state_dict())
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    model(input_ids=SOURCE, attention_mask=MASK, task="style_transfer", labels=LABELS).loss.backward()
    optimizer.step()
    after = model.state_dict()
    for key in before:
        if key.startswith(("shared.", "encoder.")):
            assert torch.equal(before[key], after[key]), key
    moved = [key for key in before
             if key.startswith("decoders.style_transfer.") and not torch.equal(before[key], after[key])]
    assert len(moved) > 10
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("decoders.qa_generation."))
    model.unfreeze_encoder()
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("adapter_rank", [0, 4])
def test_gradient_checkpointing_gives_same_loss_and_grads(adapter_rank: int) -> None:
    # Dropout 0 so both runs are deterministic; train() because checkpointing only acts in training.
    model = tiny(adapter_rank=adapter_rank, dropout=0.0).train()
    if adapter_rank:
        randomize_adapters(model)

    def loss_and_grads() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model.zero_grad()
        # Two tasks, one backward: each replay must use the adapter its forward used.
        total = sum(model(input_ids=SOURCE, attention_mask=MASK, task=t, labels=LABELS).loss
                    for t in ("style_transfer", "qa_generation"))
        total.backward()
        return total.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    loss_off, grads_off = loss_and_grads()
    model.gradient_checkpointing_enable()
    assert model.is_gradient_checkpointing
    loss_on, grads_on = loss_and_grads()
    model.gradient_checkpointing_disable()
    assert not model.is_gradient_checkpointing
    torch.testing.assert_close(loss_on, loss_off)
    assert grads_on.keys() == grads_off.keys()
    for name in grads_off:
        torch.testing.assert_close(grads_on[name], grads_off[name], atol=1e-6, rtol=1e-5, msg=name)


def test_ddp_forward_with_task_keyword(tmp_path) -> None:
    if dist.is_initialized():
        pytest.skip("a process group already exists in this test process")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        model = tiny().train()
        ddp = DistributedDataParallel(model, find_unused_parameters=True)
        for task in ("style_transfer", "role_generation"):  # one decoder per step: others unused
            out = ddp(input_ids=SOURCE, attention_mask=MASK, task=task, labels=LABELS)
            (out.loss + out.router_logits.sum() * 0).backward()
        assert model.decoders["role_generation"].layers[0].fc1.weight.grad is not None
    finally:
        dist.destroy_process_group()


def make_decoder_stop_early(model: MultiTaskKoBART, task: str) -> None:
    """Pin the decoder's last hidden state to the </s> embedding: it ends as soon as it may."""
    norm = model.decoders[task].layers[-1].final_layer_norm
    with torch.no_grad():
        norm.weight.zero_()
        norm.bias.copy_(model.shared.weight[model.config.eos_token_id] * 10)


@pytest.mark.parametrize("adapter_rank", [0, 2])
def test_router_learns_and_auto_generation_keeps_order(adapter_rank: int) -> None:
    model = tiny(seed=2, adapter_rank=adapter_rank)
    make_decoder_stop_early(model, "dialogue_summarization")  # so routed rows differ in length
    # Each task's inputs use their own token range: trivially separable for a mean-pooled probe.
    generator = torch.Generator().manual_seed(0)
    batches = {task: torch.randint(10 + 25 * i, 30 + 25 * i, (8, 6), generator=generator)
               for i, task in enumerate(TASKS)}
    first = model(input_ids=batches[TASKS[0]], task=TASKS[0], decoder_input_ids=batches[TASKS[0]][:, :2])
    assert first.router_logits.requires_grad and first.router_logits.shape == (8, len(TASKS))
    with torch.no_grad():  # the router reads detached states, so training it needs them only once
        states = torch.cat([model.encode(ids).last_hidden_state for ids in batches.values()])
    targets = torch.arange(len(TASKS)).repeat_interleave(8)
    optimizer = torch.optim.Adam(model.router_parameters(), lr=0.05)
    for _ in range(40):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model.router(states, None), targets).backward()
        optimizer.step()
    mixed = torch.cat([batches[t][:2] for t in reversed(TASKS)])  # qa, role, dialogue, style
    expected_tasks = [t for t in reversed(TASKS) for _ in range(2)]
    assert model.predict_task(mixed) == expected_tasks
    kwargs = dict(min_new_tokens=2, max_new_tokens=6)
    routed = model.generate(input_ids=mixed, task="auto", **kwargs)
    assert routed.shape == (8, 7)
    for start, task in zip(range(0, 8, 2), reversed(TASKS)):
        alone = model.generate(input_ids=mixed[start:start + 2], task=task, **kwargs)
        assert torch.equal(routed[start:start + 2, :alone.shape[1]], alone)
        assert (routed[start:start + 2, alone.shape[1]:] == 3).all()
    assert model.generate(input_ids=mixed[4:6], task="dialogue_summarization", **kwargs).shape[1] == 4
