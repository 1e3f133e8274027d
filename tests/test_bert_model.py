"""The encoder against Hugging Face transformers' BertModel (a test-only reference)."""

from __future__ import annotations

import pytest
import torch

from mtbert import BertConfig, BertModel, BertTokenizer

transformers = pytest.importorskip("transformers")

SENTENCES = ["It 's a lovely film with lovely performances by Buy and Accorsi .",
             "No one goes unindicted here .", "Bad.", "What can you get as a customer of Star Alliance?"]
PAIRS = ["What are some ways to register with Star Alliance?", "a", "Two dogs play on the grass.", "Why?"]


def hf_reference(directory):
    return transformers.BertModel.from_pretrained(directory, attn_implementation="eager").eval()


def compare(ours, theirs, batch, tolerance):
    with torch.no_grad():
        a = ours(**batch)
        b = theirs(**batch)
    real = batch["attention_mask"].bool()
    assert (a.last_hidden_state - b.last_hidden_state)[real].abs().max() < tolerance
    assert (a.pooler_output - b.pooler_output).abs().max() < tolerance


def test_minilm_matches_transformers_on_sentences_and_padded_pairs(minilm_dir):
    ours = BertModel.from_pretrained("all-MiniLM-L6-v2").eval()
    theirs = hf_reference(minilm_dir)
    tokenizer = BertTokenizer.from_pretrained("all-MiniLM-L6-v2")
    compare(ours, theirs, tokenizer(SENTENCES, padding=True, return_tensors="pt"), 1e-5)
    compare(ours, theirs, tokenizer(SENTENCES, PAIRS, padding=True, return_tensors="pt"), 1e-5)


def test_random_bert_base_sized_config_matches_transformers(tmp_path):
    torch.manual_seed(0)
    config = transformers.BertConfig(num_hidden_layers=12, hidden_size=768, num_attention_heads=12,
                                     intermediate_size=3072)
    transformers.BertModel(config).eval().save_pretrained(tmp_path)
    ours = BertModel.from_pretrained(tmp_path).eval()
    assert ours.config.hidden_size == 768 and len(ours.layers) == 12
    ids = torch.randint(1000, 30000, (2, 24))
    mask = torch.ones_like(ids)
    mask[1, 15:] = 0
    types = torch.zeros_like(ids)
    types[:, 12:] = 1
    compare(ours, hf_reference(tmp_path), {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}, 1e-5)


def test_bf16_autocast_stays_close_to_fp32():
    """bf16 keeps 8 bits of mantissa (relative error ~4e-3 per rounding); through 6 layers with
    LayerNorm re-normalising each one, the outputs (unit scale) stay within 0.1 of fp32 and the
    sentence vectors within a cosine of 0.999. Larger gaps would mean a kernel ran in the wrong dtype."""
    model = BertModel.from_pretrained("all-MiniLM-L6-v2").eval()
    tokenizer = BertTokenizer.from_pretrained("all-MiniLM-L6-v2")
    batch = tokenizer(SENTENCES, PAIRS, padding=True, return_tensors="pt")
    with torch.no_grad():
        exact = model(**batch)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(**batch)
    real = batch["attention_mask"].bool()
    assert (exact.last_hidden_state - low.last_hidden_state.float())[real].abs().max() < 0.1
    cosine = torch.nn.functional.cosine_similarity(exact.pooler_output, low.pooler_output.float())
    assert cosine.min() > 0.999


def test_embedding_output_entry_point_equals_ids_path(tiny_checkpoint):
    model = BertModel.from_pretrained(tiny_checkpoint).eval()
    ids = torch.randint(1000, 30000, (3, 10))
    mask = torch.ones_like(ids)
    mask[0, 6:] = 0
    with torch.no_grad():
        direct = model(ids, mask)
        embedded = model(embedding_output=model.embed(ids), attention_mask=mask)
    assert torch.equal(direct.last_hidden_state, embedded.last_hidden_state)
    with pytest.raises(ValueError, match="exactly one"):
        model(ids, mask, embedding_output=model.embed(ids))


def test_hidden_states_on_request(tiny_checkpoint):
    model = BertModel.from_pretrained(tiny_checkpoint).eval()
    ids = torch.randint(1000, 30000, (2, 5))
    out = model(ids, output_hidden_states=True)
    assert len(out.hidden_states) == model.config.num_hidden_layers + 1
    assert torch.equal(out.hidden_states[-1], out.last_hidden_state)
    assert model(ids).hidden_states is None


def test_save_pretrained_round_trips_and_loads_in_transformers(tmp_path, tiny_checkpoint):
    model = BertModel.from_pretrained(tiny_checkpoint).eval()
    model.save_pretrained(tmp_path)
    again = BertModel.from_pretrained(tmp_path).eval()
    ids = torch.randint(1000, 30000, (2, 7))
    with torch.no_grad():
        assert torch.equal(model(ids).pooler_output, again(ids).pooler_output)
        theirs = hf_reference(tmp_path)(input_ids=ids)
    assert torch.allclose(model(ids).last_hidden_state, theirs.last_hidden_state, atol=1e-5)


def test_too_long_input_is_refused_with_a_clear_message(tiny_checkpoint):
    model = BertModel.from_pretrained(tiny_checkpoint)
    with pytest.raises(ValueError, match="longer than the model's 128 positions"):
        model(torch.ones(1, 129, dtype=torch.long))


def test_config_rejects_heads_that_do_not_divide_width():
    with pytest.raises(ValueError, match="multiple"):
        BertConfig(hidden_size=30, num_attention_heads=4)
