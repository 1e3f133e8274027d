"""Every registered head: shapes, gradients, symmetry where the math has it, and the formulas."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mtbert import BertModel, BertTokenizer
from mtbert.multitask import MultitaskModel, collate, featurize
from mtbert.tasks import HEADS, TASKS, Example, build_head, HeadContext, SharedLayers
from mtbert.tasks.heads import relational_features

from conftest import TINY

PAIR_HEADS = ["cross_encoder", "siamese_concat", "cosine", "dot", "bilinear", "relational", "transformer_layer"]
SENTENCE_HEADS = ["linear", "transformer_layer"]
EXAMPLES = [Example(str(i), (a, b), label, i + 2) for i, (a, b, label) in enumerate([
    ("how do i learn python fast?", "what is the quickest way to learn python?", 1.0),
    ("is the moon made of cheese?", "why is the sky blue?", 0.0),
    ("a man is playing a guitar.", "a man plays the guitar.", 1.0),
])]


@pytest.fixture(scope="module")
def tokenizer(tiny_checkpoint):
    return BertTokenizer.from_pretrained(tiny_checkpoint)


def make_model(tiny_checkpoint, tokenizer, heads: dict, tasks=("quora", "sts"), **kwargs) -> MultitaskModel:
    torch.manual_seed(0)
    encoder = BertModel.from_pretrained(tiny_checkpoint)
    return MultitaskModel(encoder, tokenizer, [TASKS[t] for t in tasks], heads, max_length=32, **kwargs)


def batch_for(model: MultitaskModel, task: str, examples=EXAMPLES, swap: bool = False):
    spec = TASKS[task]
    if swap:
        examples = [Example(e.id, (e.texts[1], e.texts[0]), e.label, e.line) for e in examples]
    if not spec.is_pair:
        examples = [Example(e.id, (e.texts[0],), 1.0 if spec.kind != "classification" else 2, e.line) for e in examples]
    if spec.kind == "regression":
        examples = [Example(e.id, e.texts, 4.0 * e.label, e.line) for e in examples]
    features = featurize(model.tokenizer, spec, examples, model.encoding(task), model.max_length)
    return collate(features, list(range(len(examples))))


def test_every_head_is_covered_here():
    assert set(HEADS) == set(PAIR_HEADS) | set(SENTENCE_HEADS)


@pytest.mark.parametrize("head", PAIR_HEADS)
@pytest.mark.parametrize("task", ["quora", "sts"])
def test_pair_head_shapes_and_gradients_reach_the_encoder(tiny_checkpoint, tokenizer, head, task):
    model = make_model(tiny_checkpoint, tokenizer, {task: {"type": head}}, tasks=(task,))
    output = model(batch_for(model, task))
    assert output.scores.shape == (3,)
    assert (output.vectors is not None) == (model.heads[task].encoding == "separate")
    output.scores.sum().backward()
    layer_grad = model.encoder.layers[0].attention.qkv.weight.grad
    assert layer_grad is not None and layer_grad.abs().sum() > 0
    head_params = [p for p in model.heads[task].parameters()] + list(model.shared.parameters())
    assert all(p.grad is not None for p in head_params)


@pytest.mark.parametrize("head", PAIR_HEADS)
def test_pair_heads_run_and_train_under_cpu_bf16_autocast(tiny_checkpoint, tokenizer, head):
    # precision: auto picks bf16 on CPUs with AMX or AVX512-BF16; a head built of a module that CPU
    # autocast has no rule for (nn.Bilinear) once failed there with mixed dtypes. Emulated bf16 runs on any CPU.
    model = make_model(tiny_checkpoint, tokenizer, {"sts": {"type": head}}, tasks=("sts",))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = model(batch_for(model, "sts"))
    assert output.scores.shape == (3,) and torch.isfinite(output.scores).all()
    output.scores.float().sum().backward()
    assert all(p.grad is not None for p in model.heads["sts"].parameters())


@pytest.mark.parametrize("head", SENTENCE_HEADS)
def test_sentence_head_shapes_for_five_classes(tiny_checkpoint, tokenizer, head):
    model = make_model(tiny_checkpoint, tokenizer, {"sst": {"type": head}}, tasks=("sst",))
    assert model(batch_for(model, "sst")).scores.shape == (3, 5)


@pytest.mark.parametrize("head", ["linear", "siamese_concat", "relational"])
def test_frozen_encoder_gets_no_gradient_and_stays_in_eval_mode(tiny_checkpoint, tokenizer, head):
    task = "sst" if head == "linear" else "quora"
    model = make_model(tiny_checkpoint, tokenizer, {task: {"type": head}}, tasks=(task,))
    model.freeze_encoder()
    model.train()
    assert not model.encoder.training and model.heads[task].training
    model(batch_for(model, task)).scores.sum().backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is not None for p in model.heads[task].parameters())


def test_top_layers_stay_trainable(tiny_checkpoint, tokenizer):
    model = make_model(tiny_checkpoint, tokenizer, {}, tasks=("sst",))
    model.freeze_encoder(trainable_top_layers=1)
    trainable = {n for n, p in model.encoder.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("layers.1.", "pooler.")) for n in trainable)
    model.train()
    assert model.encoder.training  # only a wholly frozen encoder is kept in eval mode
    with pytest.raises(ValueError, match="between 0 and 2"):
        model.freeze_encoder(trainable_top_layers=3)


def test_cosine_head_is_the_cosine_of_the_two_vectors_and_symmetric(tiny_checkpoint, tokenizer):
    model = make_model(tiny_checkpoint, tokenizer, {"sts": {"type": "cosine", "pooling": "mean"}}, tasks=("sts",))
    model.eval()
    output = model(batch_for(model, "sts"))
    u, v = output.vectors
    assert torch.allclose(output.scores, 5.0 * F.cosine_similarity(u, v, dim=-1), atol=1e-5)
    swapped = model(batch_for(model, "sts", swap=True)).scores
    assert torch.allclose(output.scores, swapped, atol=1e-5)


@pytest.mark.parametrize("task", ["sts", "quora"])
def test_dot_head_is_the_raw_dot_product_with_no_parameters(tiny_checkpoint, tokenizer, task):
    model = make_model(tiny_checkpoint, tokenizer, {task: {"type": "dot", "pooling": "mean"}}, tasks=(task,))
    model.eval()
    output = model(batch_for(model, task))
    u, v = output.vectors
    assert torch.allclose(output.scores.reshape(-1), (u * v).sum(-1), atol=1e-5)
    assert not (u.norm(dim=-1) - 1).abs().lt(1e-3).all()  # not normalised: a dot product, not a cosine
    assert list(model.heads[task].parameters()) == []


def test_cosine_head_gives_a_learned_logit_for_paraphrase(tiny_checkpoint, tokenizer):
    model = make_model(tiny_checkpoint, tokenizer, {"quora": {"type": "cosine", "scale": 4.0, "offset": 0.25}},
                       tasks=("quora",))
    model.eval()
    output = model(batch_for(model, "quora"))
    cosine = F.cosine_similarity(*output.vectors, dim=-1)
    assert torch.allclose(output.scores, 4.0 * (cosine - 0.25), atol=1e-5)
    assert {n for n, _ in model.heads["quora"].named_parameters()} == {"scale", "offset"}


def test_bilinear_head_swapping_sentences_transposes_w(tiny_checkpoint, tokenizer):
    model = make_model(tiny_checkpoint, tokenizer, {"sts": {"type": "bilinear"}}, tasks=("sts",))
    model.eval()
    head = model.heads["sts"]
    output = model(batch_for(model, "sts"))
    u, v = output.vectors
    weight, bias = head.output.weight[0], head.output.bias[0]
    assert torch.allclose(output.scores, torch.einsum("bi,ij,bj->b", u, weight, v) + bias, atol=1e-5)
    swapped = model(batch_for(model, "sts", swap=True)).scores
    assert torch.allclose(swapped, torch.einsum("bi,ji,bj->b", u, weight, v) + bias, atol=1e-5)


def test_siamese_concat_features_and_product_option(tiny_checkpoint, tokenizer):
    for product, width in ((False, 3), (True, 4)):
        model = make_model(tiny_checkpoint, tokenizer, {"quora": {"type": "siamese_concat", "product": product}},
                           tasks=("quora",))
        model.eval()
        head = model.heads["quora"]
        assert head.output.in_features == width * TINY.hidden_size
        output = model(batch_for(model, "quora"))
        u, v = output.vectors
        parts = [u, v, (u - v).abs()] + ([u * v] if product else [])
        assert torch.allclose(output.scores, head.output(torch.cat(parts, -1)).squeeze(-1), atol=1e-5)


def test_relational_feature_block_sums_to_the_cosine():
    torch.manual_seed(0)
    u, v = torch.randn(6, 16), torch.randn(6, 16)
    features = relational_features(u, v)
    assert features.shape == (6, 64)
    assert torch.allclose(features[:, 48:].sum(-1), F.cosine_similarity(u, v, dim=-1), atol=1e-6)
    swapped = relational_features(v, u)
    assert torch.equal(features[:, 32:], swapped[:, 32:])  # |u−v| and the scaled product are symmetric


def test_relational_layer_is_shared_by_the_pair_tasks_and_saved_once(tiny_checkpoint, tokenizer, tmp_path):
    heads = {"quora": {"type": "relational"}, "sts": {"type": "relational"}}
    model = make_model(tiny_checkpoint, tokenizer, heads, tasks=("quora", "sts"))
    assert list(model.shared) == ["relational_pairs"]
    shared = model.shared["relational_pairs"][0].weight
    model(batch_for(model, "sts")).scores.sum().backward()
    assert shared.grad is not None and model.heads["quora"].output.weight.grad is None
    names = [n for n, _ in model.named_parameters()]
    assert sum("relational_pairs" in n for n in names) == 2  # weight and bias, counted once
    model.eval()
    expected = model(batch_for(model, "quora")).scores
    model.save_pretrained(tmp_path / "m")
    loaded = MultitaskModel.from_pretrained(tmp_path / "m").eval()
    assert torch.allclose(loaded(batch_for(loaded, "quora")).scores, expected, atol=1e-6)


def test_relational_groups_must_agree_on_their_shape(tiny_checkpoint, tokenizer):
    heads = {"quora": {"type": "relational", "hidden": 8}, "sts": {"type": "relational", "hidden": 16}}
    with pytest.raises(ValueError, match="shared with other settings"):
        make_model(tiny_checkpoint, tokenizer, heads)


def test_shared_hidden_layer_sits_before_every_head_and_round_trips(tiny_checkpoint, tokenizer, tmp_path):
    heads = {"sst": {"type": "linear"}, "quora": {"type": "siamese_concat"}, "sts": {"type": "cosine"}}
    model = make_model(tiny_checkpoint, tokenizer, heads, tasks=("sst", "quora", "sts"), shared_hidden_layer=True)
    model.eval()
    output = model(batch_for(model, "sts"))
    assert (output.vectors[0] >= 0).all()  # through the shared ReLU
    for task in ("sst", "quora"):
        model.zero_grad()
        model(batch_for(model, task)).scores.sum().backward()
        assert model.shared["sentence"][0].weight.grad.abs().sum() > 0
    model.save_pretrained(tmp_path / "m")
    loaded = MultitaskModel.from_pretrained(tmp_path / "m").eval()
    assert loaded.shared_hidden_layer
    assert torch.allclose(loaded(batch_for(loaded, "sts")).scores, output.scores, atol=1e-6)


def test_transformer_layer_head_uses_its_own_layer(tiny_checkpoint, tokenizer):
    model = make_model(tiny_checkpoint, tokenizer, {"sst": {"type": "transformer_layer", "dropout": 0.3}},
                       tasks=("sst",))
    model.eval()
    head = model.heads["sst"]
    assert head.feed_forward.in_features == 2 * TINY.hidden_size and head.hidden == 2 * TINY.hidden_size
    before = model(batch_for(model, "sst")).scores
    with torch.no_grad():
        head.layer.ffn_out.weight.add_(torch.randn_like(head.layer.ffn_out.weight))  # a bias shift would vanish in LN
    assert not torch.allclose(model(batch_for(model, "sst")).scores, before)


def test_head_errors_name_the_problem(tiny_checkpoint, tokenizer):
    context = HeadContext(TINY, SharedLayers())
    with pytest.raises(ValueError, match="needs a sentence-pair task"):
        build_head("cosine", TASKS["sst"], context)
    with pytest.raises(ValueError, match="serves binary, regression tasks"):
        build_head("cosine", TASKS["sst"].__class__(**{**TASKS["sst"].to_dict(), "text_columns": ("a", "b")}),
                   context)
    with pytest.raises(ValueError, match=r"head 'linear' has no option\(s\) product; its options: dropout, pooling"):
        build_head("linear", TASKS["sst"], context, product=True)
    with pytest.raises(ValueError, match="unknown head 'nope'"):
        build_head("nope", TASKS["sst"], context)
    with pytest.raises(ValueError, match="unknown pooling 'max'"):
        build_head("linear", TASKS["sst"], context, pooling="max")
