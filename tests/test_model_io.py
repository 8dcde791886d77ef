"""Models as users have them: tensor, tuple or dict inputs; tensor, tuple, dict or ``.logits``
outputs; no wrapper, the user's parameter names; export and evaluate of such a model."""

from __future__ import annotations

import sys
import textwrap
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import fairprune
from fairprune.cli import main
from fairprune.data.adapters import as_group_data, as_splits
from fairprune.export import evaluate_exported, export_model, load_exported
from fairprune.fairness import Constraint, FairnessObjective
from fairprune.masks import prunable_parameters
from fairprune.model_io import (
    as_features,
    concat,
    forward_logits,
    n_samples,
    output_logits,
    rows,
    sample_shapes,
    take,
)
from fairprune.pruners import BiFPSparsifier

FAST = {"steps": 4, "finetune_steps": 2, "progress": False, "certify": 0}


def test_features_index_concat_and_shapes_for_each_kind():
    x = torch.arange(12.0).reshape(6, 2)
    kinds = [x, (x, x[:, :1]), {"a": x, "b": x[:, 0].long()}]
    for f in kinds:
        assert n_samples(f) == 6
        picked = take(f, torch.tensor([4, 1]))
        assert n_samples(picked) == 2 and n_samples(rows(f, 1, 4)) == 3
        joined = concat([rows(f, 0, 2), rows(f, 2, 6)])
        assert n_samples(joined) == 6
    assert torch.equal(take(kinds[2], torch.tensor([4, 1]))["b"], torch.tensor([8, 2]))
    assert sample_shapes(kinds[1]) == [[2], [1]]
    assert sample_shapes(kinds[2]) == {"a": [2], "b": []}


def test_bad_features_say_what_was_expected():
    with pytest.raises(ValueError, match=r"batch-first tensors with one first dimension N; received dict"):
        as_features({"a": torch.zeros(3, 2), "b": torch.zeros(4)})
    with pytest.raises(ValueError, match=r"batches must all be dicts with keys \['a'\]"):
        concat([{"a": torch.zeros(1)}, {"b": torch.zeros(1)}])


def test_logits_are_taken_from_each_kind_of_output():
    logits = torch.randn(3, 2)
    assert output_logits(logits) is logits
    assert output_logits((logits, torch.zeros(1))) is logits
    assert output_logits({"aux": torch.zeros(1), "logits": logits}) is logits
    assert output_logits({"out": logits}) is logits
    assert output_logits(SimpleNamespace(logits=logits, loss=None)) is logits
    with pytest.raises(TypeError, match=r"dict with keys \['a', 'b'\]; expected a 'logits' entry"):
        output_logits({"a": logits, "b": logits})
    with pytest.raises(TypeError, match=r"the model returned str; expected logits"):
        output_logits("nope")


class TwoInputs(nn.Module):
    """Takes a tuple ``(numeric, mask)``, returns a dict with logits and an auxiliary output."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU())
        self.classifier = nn.Linear(16, 2)

    def forward(self, numeric: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.encoder(numeric * mask)
        return {"logits": self.classifier(h), "features": h}


def planted(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x (n, 6); group g = i % 2; y = [x0 > 0], with a fifth of group 1's labels flipped."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=gen)
    g = torch.arange(n) % 2
    y = (x[:, 0] > 0).long()
    flip = (torch.rand(n, generator=gen) < 0.2) & (g == 1)
    return x, torch.where(flip, 1 - y, y), g


def test_a_tuple_input_dict_output_model_prunes_to_the_exact_target_with_its_own_names():
    torch.manual_seed(0)
    model = TwoInputs()
    (x, y, g), (xv, yv, gv) = planted(256, 0), planted(128, 1)
    train, val = ((x, torch.ones_like(x)), y, g), ((xv, torch.ones_like(xv)), yv, gv)
    result = fairprune.prune(model, train, val, sparsity=0.8, **FAST)
    assert list(result.masks) == ["encoder.0.weight", "encoder.2.weight", "classifier.weight"]
    zeros = sum(int((m == 0).sum()) for m in result.masks.values())
    assert zeros == round(0.8 * (6 * 32 + 32 * 16 + 16 * 2)) == 589
    assert result.achieved_sparsity == 589 / 736
    assert result.achieved_sparsity_all == 589 / (736 + 32 + 16 + 2)
    assert sorted(result.coverage.dense) == ["classifier.bias", "encoder.0.bias", "encoder.2.bias"]
    batch = (xv[:8], torch.ones_like(xv[:8]))
    pruned = result.model.eval()
    assert isinstance(pruned(*batch), dict)  # the user's model, not a wrapper
    assert int((pruned.encoder[0].weight == 0).sum()) == int((result.masks["encoder.0.weight"] == 0).sum())


def tokens(n: int, seed: int, vocab: int = 100) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Token ids (n, 8); y = [first token >= vocab / 2]; a fifth of group 1's labels flipped."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (n, 8), generator=gen)
    g = torch.arange(n) % 2
    y = (ids[:, 0] >= vocab // 2).long()
    flip = (torch.rand(n, generator=gen) < 0.2) & (g == 1)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, torch.where(flip, 1 - y, y), g


def hf_model(kind: str) -> nn.Module:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    if kind == "bert":
        config = transformers.BertConfig(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            vocab_size=100, max_position_embeddings=16,
        )  # fmt: skip
        return transformers.BertForSequenceClassification(config)
    config = transformers.GPT2Config(
        n_embd=32, n_layer=2, n_head=4, vocab_size=100, n_positions=16, pad_token_id=0,
        bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    return transformers.GPT2ForSequenceClassification(config)


@pytest.mark.parametrize(
    ("kind", "n_prunable", "n_all", "dense_names"),
    [
        ("bert", 17472, 22050, ["bert.embeddings.position_embeddings.weight", "bert.pooler.dense.bias"]),
        ("gpt2", 24640, 29248, ["transformer.wpe.weight", "transformer.h.0.attn.c_attn.bias"]),
    ],
)
def test_hugging_face_classifiers_prune_unstructured_exactly(kind, n_prunable, n_all, dense_names):
    model = hf_model(kind)
    result = fairprune.prune(model, tokens(192, 0), tokens(96, 1), sparsity=0.5, **FAST)
    cover = result.coverage
    assert (cover.n_prunable, cover.n_parameters) == (n_prunable, n_all)
    assert set(dense_names) <= set(cover.dense)
    zeros = sum(int((m == 0).sum()) for m in result.masks.values())
    assert zeros == n_prunable // 2
    assert result.achieved_sparsity == 0.5
    assert result.achieved_sparsity_all == zeros / n_all
    if kind == "gpt2":  # every Conv1D ([in, out] weight) is masked, not only the score head
        assert "transformer.h.0.attn.c_attn.weight" in result.masks
        assert int((result.model.transformer.h[0].attn.c_attn.weight == 0).sum()) == int(
            (result.masks["transformer.h.0.attn.c_attn.weight"] == 0).sum()
        )
    batch = tokens(4, 2)[0]
    out = result.model.eval()(**batch)  # the model's own output type, no wrapper
    assert out.logits.shape == (4, 2)


class LSTMClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(100, 8)
        self.rnn = nn.LSTM(8, 16, batch_first=True)
        self.head = nn.Linear(16, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.embed(ids))
        return self.head(out[:, -1])


def test_an_lstm_classifier_prunes_its_recurrent_weights_exactly():
    torch.manual_seed(0)
    (x, y, g), (xv, yv, gv) = tokens(192, 0), tokens(96, 1)
    model = LSTMClassifier()
    result = fairprune.prune(model, (x["input_ids"], y, g), (xv["input_ids"], yv, gv), sparsity=0.7, **FAST)
    assert list(result.masks) == ["rnn.weight_ih_l0", "rnn.weight_hh_l0", "head.weight"]
    n = 64 * 8 + 64 * 16 + 2 * 16
    assert sum(int((m == 0).sum()) for m in result.masks.values()) == round(0.7 * n) == 1098
    assert result.coverage.dense["embed.weight"] == "Embedding.weight"
    assert result.achieved_sparsity_all == 1098 / (n + 800 + 64 + 64 + 2)
    shipped = result.model.rnn.weight_hh_l0
    assert torch.equal(shipped == 0, result.masks["rnn.weight_hh_l0"] == 0)


def test_export_model_takes_the_data_prune_takes_and_a_result(tmp_path):
    torch.manual_seed(0)
    train, val, test = planted(256, 0), planted(128, 1), planted(128, 2)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))
    result = fairprune.prune(model, train, val, sparsity=0.5, test=test, group_names=["a", "b"], **FAST)
    out = export_model(result, tmp_path / "ship", data=(train, val, test), dense=model)
    card = load_exported(out, nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))).card
    assert card["data"]["group_names"] == ["a", "b"]  # the result's names
    assert card["metrics"]["test"]["pruned"]["accuracy"] == result.metrics["test"]["pruned"]["accuracy"]
    with pytest.raises(TypeError, match=r"data must be a Splits, \(train, val\) or \(train, val, test\)"):
        export_model(result, tmp_path / "bad", data=train[0])


def test_evaluate_an_api_export_of_any_architecture_with_factories(tmp_path, monkeypatch, capsys):
    module = tmp_path / "user_code.py"
    module.write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn

            def build():
                return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))

            def data():
                def planted(n, seed):
                    gen = torch.Generator().manual_seed(seed)
                    x = torch.randn(n, 6, generator=gen)
                    g = torch.arange(n) % 2
                    y = (x[:, 0] > 0).long()
                    flip = (torch.rand(n, generator=gen) < 0.2) & (g == 1)
                    return x, torch.where(flip, 1 - y, y), g
                return planted(256, 0), planted(128, 1), planted(128, 2)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("user_code", None)
    import user_code  # type: ignore[import-not-found]

    torch.manual_seed(0)
    train, val, test = user_code.data()
    result = fairprune.prune(user_code.build(), train, val, sparsity=0.5, test=test, **FAST)
    out = export_model(result, tmp_path / "ship", data=(train, val, test))
    assert main(["evaluate", str(out)]) == 2  # no built-in architecture, no data: one line
    assert "pass model=" in capsys.readouterr().err
    code = main(["evaluate", str(out), "--model", "user_code:build", "--data", "user_code:data"])
    assert code == 0, capsys.readouterr().err
    assert "every metric of the test split agrees with the card" in capsys.readouterr().out
    assert main(["evaluate", str(out), "--model", "user_code:nothing"]) == 2
    assert "--model user_code:nothing: cannot import it" in capsys.readouterr().err


def test_a_model_that_does_not_take_the_inputs_is_named_before_training():
    x, y, g = planted(64, 0)
    with pytest.raises(TypeError, match=r"TwoInputs does not take the inputs \(2, 6\) float32"):
        fairprune.prune(TwoInputs(), (x, y, g), (x, y, g), sparsity=0.5, **FAST)


def test_group_data_holds_dict_features():
    data = as_group_data(tokens(10, 0), name="train")
    assert len(data) == 10 and "dict input_ids" in repr(data)
    assert torch.equal(data.subset(torch.tensor([3])).x["input_ids"], data.x["input_ids"][3:4])
    model = hf_model("gpt2")
    logits = forward_logits(model.eval(), data.x)
    assert logits.shape == (10, 2)
    assert "transformer.h.1.mlp.c_proj.weight" in prunable_parameters(model)


class DictItems(torch.utils.data.Dataset):
    """A tokenised text dataset as users have them: items ``({"input_ids", "attention_mask"}, y, g)``."""

    def __len__(self) -> int:
        return 10

    def __getitem__(self, i: int):
        return (
            {"input_ids": torch.arange(4) + i, "attention_mask": torch.ones(4, dtype=torch.long)},
            i % 2,
            i % 2,
        )


def test_a_dataset_or_loader_of_dict_items_reads_into_one_split():
    data = as_group_data(DictItems(), name="train")
    batched = as_group_data(torch.utils.data.DataLoader(DictItems(), batch_size=3), name="train")
    assert torch.equal(data.x["input_ids"], batched.x["input_ids"])
    assert data.x["input_ids"][7].tolist() == [7, 8, 9, 10] and data.y.tolist() == [0, 1] * 5


def test_a_hugging_face_result_exports_and_re_checks_with_dict_inputs(tmp_path):
    train, val, test = tokens(192, 0), tokens(96, 1), tokens(96, 2)
    result = fairprune.prune(hf_model("gpt2"), train, val, sparsity=0.5, test=test, **FAST)
    out = export_model(result, tmp_path / "ship", data=(train, val, test))
    exported = load_exported(out, hf_model("gpt2"))
    assert exported.card["model"]["input_shape"] == {"input_ids": [8], "attention_mask": [8]}
    assert exported.card["footprint"]["sparsity"] == 0.5
    evaluation = evaluate_exported(exported, as_splits((train, val, test), group_names=["0", "1"]))
    assert evaluation.passed, evaluation.format()


def test_the_sparsifier_in_a_plain_loop_prunes_a_hugging_face_model_exactly():
    model = hf_model("gpt2")
    x, y, g = tokens(64, 0)
    objective = FairnessObjective("equalized_odds", 0.02, mode="lagrangian", dual_step=1.0)
    sparsifier = BiFPSparsifier(0.6, Constraint(objective, 2))
    sparsifier.prepare(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for start in (0, 32):
        batch = {k: v[start : start + 32] for k, v in x.items()}
        logits = model(**batch).logits  # the user's own call
        loss = nn.functional.cross_entropy(logits, y[start : start + 32])
        loss = loss + sparsifier.fairness_term(logits, y[start : start + 32], g[start : start + 32])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        sparsifier.step()
    violation = sparsifier.update_multiplier(as_group_data((x, y, g), name="val"))
    assert violation == violation  # a number: the loop read the dict inputs and .logits
    pruned = sparsifier.squash_mask()
    weights = prunable_parameters(pruned)
    zeros = sum(int((w == 0).sum()) for w in weights.values())
    assert zeros == round(0.6 * 24640)


def test_channel_mode_on_an_lstm_is_refused_in_one_line_naming_the_model():
    (x, y, g), (xv, yv, gv) = tokens(64, 0), tokens(32, 1)
    with pytest.raises(ValueError, match=r"^LSTMClassifier has no channel that can be pruned on its own; .*"):
        fairprune.prune(
            LSTMClassifier(), (x["input_ids"], y, g), (xv["input_ids"], yv, gv), sparsity=0.5,
            structure="channel", **FAST,
        )  # fmt: skip


def test_a_tuple_input_dict_output_model_prunes_channels_and_comes_back_slim():
    torch.manual_seed(0)
    model = TwoInputs()
    (x, y, g), (xv, yv, gv) = planted(256, 0), planted(128, 1)
    train, val = ((x, torch.ones_like(x)), y, g), ((xv, torch.ones_like(xv)), yv, gv)
    result = fairprune.prune(model, train, val, sparsity=0.5, structure="channel", **FAST)
    assert result.achieved_sparsity == pytest.approx(0.5, abs=0.02)  # within half a channel
    slim = result.model.eval()
    assert sum(p.numel() for p in slim.parameters()) < sum(p.numel() for p in model.parameters())
    assert isinstance(slim(xv[:8], torch.ones_like(xv[:8])), dict)  # the user's class, slimmed
