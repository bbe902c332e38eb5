"""The LM's data: offline corpus, C4 without network, local files, shards and validation."""
from __future__ import annotations

import json
import socket
import time

import numpy as np
import pytest

from trainers.base import UserError
from trainers.data import (
    DataConfig,
    _split_validation,
    epoch_order,
    load_c4_documents,
    load_corpus,
    load_local_documents,
    make_shards,
    num_windows,
)


@pytest.fixture(autouse=True)
def lm_cache(tmp_path_factory, monkeypatch):
    """One cache for the whole session (shared with tests/test_lm.py): tokenize once."""
    monkeypatch.setenv("ASYNCSIM_CACHE", str(tmp_path_factory.getbasetemp() / "asyncsim-cache"))


@pytest.fixture
def no_network(monkeypatch):
    """Every attempt to open a connection or resolve a name fails at once."""

    def refuse(*args, **kwargs):
        raise OSError(101, "Network is unreachable (blocked by the test)")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)


def test_offline_corpus_loads_without_network(no_network, tmp_path, monkeypatch):
    monkeypatch.setenv("ASYNCSIM_CACHE", str(tmp_path))  # nothing cached: really load it
    docs = load_local_documents(DataConfig())
    assert len(docs.train) > 30_000 and len(docs.validation) > 1_000
    assert any("To be, or not to be" in d for d in docs.train + docs.validation)
    corpus = load_corpus(DataConfig(max_documents=3000), vocab_size=300)
    assert corpus.vocab_size == 300 and len(corpus.train) > 10 * len(corpus.validation) > 0


@pytest.mark.parametrize("how", ["offline_env", "no_route"])
def test_c4_without_network_is_one_clear_line(how, no_network, monkeypatch):
    if how == "offline_env":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(UserError) as info:
        load_c4_documents(DataConfig(corpus="c4"))
    message = str(info.value)
    assert time.perf_counter() - start < 10
    assert "\n" not in message and "C4" in message
    assert "offline corpus" in message and "data.path" in message


def test_c4_error_through_the_cli_has_no_traceback(no_network, tmp_path):
    from typer.testing import CliRunner

    from sim.cli import app

    result = CliRunner().invoke(
        app,
        ["run", "scenarios/lm_tiny_very_heterogeneous.yaml", "-q", "--set", "trainer.config.data.corpus=c4", "--out", str(tmp_path / "unused")],
    )
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: cannot load C4"), result.output
    assert "Traceback" not in result.output


def test_missing_local_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_local_documents(DataConfig(path=str(tmp_path / "missing.txt")))
    (tmp_path / "notes.csv").write_text("a,b\n")
    with pytest.raises(UserError, match="unsupported file type"):
        load_local_documents(DataConfig(path=str(tmp_path / "notes.csv")))


def test_an_unwritable_cache_is_named_as_the_cache_not_as_an_unreadable_corpus(tmp_path, monkeypatch):
    import os

    from trainers.data import load_corpus

    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")  # a cache under a file can never be created, whoever runs the test (root included)
    monkeypatch.setenv("ASYNCSIM_CACHE", str(blocked / "cache"))
    with pytest.raises(UserError) as error:
        load_corpus(DataConfig(), vocab_size=512)
    assert str(error.value).startswith(f"cannot write the cache {blocked / 'cache'} ($ASYNCSIM_CACHE): ")
    assert str(error.value).endswith("; set ASYNCSIM_CACHE to a writable folder") and os.linesep not in str(error.value)


@pytest.mark.parametrize("kind", ["txt", "jsonl", "parquet"])
def test_local_files_load(kind, tmp_path):
    texts = [f"Document number {i} says hello to the world, again and again." for i in range(200)]
    if kind == "txt":
        (tmp_path / "a.txt").write_text("\n\n".join(texts))
    elif kind == "jsonl":
        (tmp_path / "a.jsonl").write_text("\n".join(json.dumps({"body": t}) for t in texts))
    else:
        import pandas as pd

        pd.DataFrame({"body": texts}).to_parquet(tmp_path / "a.parquet")
    cfg = DataConfig(path=str(tmp_path), text_field="body", validation_fraction=0.1)
    docs = load_local_documents(cfg)
    assert sorted(docs.train + docs.validation) == sorted(texts)
    assert not set(docs.train) & set(docs.validation)
    corpus = load_corpus(cfg, vocab_size=280)
    assert corpus.tokenizer().decode(corpus.validation.tolist()).startswith(docs.validation[0][:20])


def test_validation_split_is_fixed_and_disjoint():
    docs = [f"paragraph {i}" for i in range(1000)]
    a, b = _split_validation(docs, 0.05), _split_validation(docs, 0.05)
    assert a == b and 20 < len(a.validation) < 80
    assert set(a.train) | set(a.validation) == set(docs) and not set(a.train) & set(a.validation)


@pytest.mark.parametrize("kind", ["iid", "by_source"])
def test_shards_disjoint_and_cover(kind):
    shards = make_shards(1001, 4, kind, np.random.default_rng(0))
    flat = np.concatenate(shards)
    assert sorted(flat.tolist()) == list(range(1001))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    if kind == "by_source":
        assert all((np.diff(s) == 1).all() for s in shards)


def test_shakespeare_shards_never_contain_validation_text():
    from trainers.lm import LMTrainer

    trainer = LMTrainer({"device": "cpu"}, seed=3, num_shards=4)
    L, corpus = trainer.arch.seq_len, trainer.corpus
    n = num_windows(corpus.train, L)
    windows = np.concatenate(trainer._shards)
    # Disjoint, covering every full window of the training stream.
    assert len(windows) == n and len(np.unique(windows)) == n
    # The held-out paragraphs are not training paragraphs, and long ones occur nowhere in training.
    docs = load_local_documents(DataConfig())
    train_text = "\n".join(docs.train)
    long_val = [d for d in docs.validation if len(d) > 400]
    assert long_val and not any(d in train_text for d in long_val[:50])
    # Evaluation windows are decoded validation text: the first eval window is a held-out paragraph.
    tok = corpus.tokenizer()
    first_eval = tok.decode(trainer._eval[0].tolist())
    assert first_eval.startswith(docs.validation[0][:40])
    assert docs.validation[0][:200] not in train_text


def test_epoch_order_is_a_pure_function_of_offset():
    perm = lambda e: np.random.default_rng(e).permutation(10)  # noqa: E731
    whole = epoch_order(10, 0, 35, perm)
    assert (epoch_order(10, 7, 20, perm) == whole[7:27]).all()
    assert sorted(whole[:10].tolist()) == list(range(10))
