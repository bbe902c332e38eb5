"""Text for the language-model trainer: corpora, tokenizer, train/validation split, shards.

Three sources, all loaded through Hugging Face ``datasets``:

* ``corpus: shakespeare`` (the default, needs no network): the 42 works of
  Shakespeare committed under ``trainers/corpus/`` (see its NOTICE), read
  with ``load_dataset("text", sample_by="document")``. Each work is split
  into paragraphs (speeches, stanzas: blocks separated by a blank line);
  those paragraphs are the documents.
* ``corpus: c4``: ``load_dataset("allenai/c4", "en", streaming=True)``, the
  paper's data set, for users who can reach the hub: the first
  ``max_documents`` training documents and the first
  ``validation_documents`` of C4's own validation split. Without network it
  fails in about a second with one line that says what to use instead.
* ``path: ...``: local files (a file, a folder or a glob) of plain text
  (``.txt``, optionally ``.gz``), JSON lines (``.jsonl``/``.json``, field
  ``text_field``) or parquet (column ``text_field``). Relative paths are
  taken from the working directory.

Corpora without a validation split (Shakespeare, local files) hold out a
fixed fraction of their documents, chosen by a fixed RNG stream that does
not depend on the scenario's seed, so every run of every method is scored
on the same text. Validation documents are never trained on, neither by
the tokenizer nor by the model.

Tokenizer: a byte-level BPE trained with the ``tokenizers`` library on the
training documents only (deterministic: same text, same vocabulary, same
bytes), with one special token ``<|endoftext|>`` that ends every document.
Each split becomes one token stream; sequences are consecutive windows of
``seq_len + 1`` tokens with stride ``seq_len`` (input and shifted target).
Tokenizer and streams are cached under the cache directory, keyed by a hash
of the corpus bytes (or the C4 request) and the vocabulary size.

Shards: the training windows are split into ``k`` disjoint shards that
together cover the training stream: ``iid`` deals a seeded permutation of
the windows, ``by_source`` keeps corpus order, so each shard holds whole
consecutive works / files / documents (a non-iid split by source).
"""
from __future__ import annotations

import glob as globlib
import hashlib
import json
import os
import re
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import urlparse

import numpy as np
import torch

from sim.outputs import atomic_output
from trainers.base import FieldError, UserError, epoch_order, seeded_rng  # noqa: F401  (epoch_order re-exported for lm.py)
from trainers.configs import DataConfig  # noqa: F401  (re-exported)

CORPUS_DIR = Path(__file__).resolve().parent / "corpus"
EOS = "<|endoftext|>"
#: seeds the train/validation split: fixed, so every scenario seed scores on the same text
_SPLIT_SEED = 20240417
#: bump when the way documents become token streams changes (invalidates caches)
_FORMAT_VERSION = 1
_FORMATS = {".txt": "text", ".text": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
_HUB_TIMEOUT_S = 3.0


def cache_dir() -> Path:
    """``$ASYNCSIM_CACHE``, else ``.cache/asyncsim`` under the working directory."""
    return Path(os.environ.get("ASYNCSIM_CACHE") or Path.cwd() / ".cache" / "asyncsim")


def writable_cache() -> Path:
    """:func:`cache_dir`, created if needed; one line naming it (and the way out) if it cannot be written."""
    import tempfile

    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        how = "$ASYNCSIM_CACHE" if os.environ.get("ASYNCSIM_CACHE") else "the default under the working directory"
        raise UserError(f"cannot write the cache {folder} ({how}): {exc.strerror or type(exc).__name__}; "
                        "set ASYNCSIM_CACHE to a writable folder") from None
    return folder


def digest(obj: object) -> str:
    """sha256 of a JSON-able object in canonical form."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write a cache file through a temporary sibling, then rename: whole or not at all; a full disk is one line, exit 3."""
    with atomic_output(path) as tmp:
        write(tmp)


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (created if missing), held for the block.

    Lets concurrent processes that need the same cache entry build it once:
    the first takes the lock and builds, the others wait, then find it built.
    """
    from filelock import FileLock  # portable (fcntl exists only on POSIX), as the run store's lock

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path)):
        yield


# -- documents ----------------------------------------------------------------


@dataclass
class Documents:
    """Text split into training and validation documents, in corpus order."""

    train: list[str]
    validation: list[str]


def _quiet_datasets() -> None:
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()


def _local_files(cfg: DataConfig) -> list[Path]:
    if cfg.path is None:
        files = sorted(CORPUS_DIR.glob("*.txt.gz"))
        if not files:
            raise UserError(f"the offline corpus is missing: no *.txt.gz files in {CORPUS_DIR}")
        return files
    p = Path(cfg.path).expanduser()
    if any(ch in cfg.path for ch in "*?["):
        files = sorted(Path(f) for f in globlib.glob(str(p), recursive=True) if Path(f).is_file())
    elif p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and _format_of(f) is not None)
    elif p.is_file():
        files = [p]
    else:
        raise FieldError("trainer.config.data.path", f"no such file or folder: {cfg.path}")
    if not files:
        raise FieldError("trainer.config.data.path", f"no .txt, .jsonl or .parquet files match {cfg.path}")
    formats = {_format_of(f) for f in files}
    if None in formats:
        bad = next(f for f in files if _format_of(f) is None)
        raise FieldError("trainer.config.data.path", f"{bad}: unsupported file type (expected .txt, .jsonl, .json or .parquet, optionally .gz)")
    if len(formats) > 1:
        raise FieldError("trainer.config.data.path", f"mixes file types ({', '.join(sorted(formats))}); use one kind")
    return files


def _format_of(path: Path) -> str | None:
    suffixes = path.suffixes
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return _FORMATS.get(suffixes[-1].lower()) if suffixes else None


def _paragraphs(text: str) -> list[str]:
    return [p.strip("\n") for p in re.split(r"\n[ \t]*\n", text) if p.strip()]


def _split_validation(docs: list[str], fraction: float) -> Documents:
    held_out = seeded_rng(_SPLIT_SEED).random(len(docs)) < fraction
    if len(docs) >= 2 and not held_out.any():
        held_out[-1] = True
    train = [d for d, v in zip(docs, held_out) if not v]
    val = [d for d, v in zip(docs, held_out) if v]
    return Documents(train, val)


def load_local_documents(cfg: DataConfig) -> Documents:
    """The offline corpus or ``cfg.path`` through ``datasets``; no network needed."""
    import datasets

    files = _local_files(cfg)
    fmt = _format_of(files[0])
    _quiet_datasets()
    kwargs = {"sample_by": "document"} if fmt == "text" else {}
    try:
        ds = datasets.load_dataset(
            fmt, data_files=[str(f) for f in files], split="train", cache_dir=str(cache_dir() / "datasets"), **kwargs
        )
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {cfg.path or CORPUS_DIR}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    field = "text" if fmt == "text" else cfg.text_field
    if field not in ds.column_names:
        raise FieldError("trainer.config.data.text_field", f"{cfg.path} has no field {field!r} (it has: {', '.join(ds.column_names)})")
    rows = [r for r in ds[field] if isinstance(r, str)]
    docs = [p for r in rows for p in _paragraphs(r)] if fmt == "text" else [r for r in rows if r.strip()]
    if cfg.max_documents is not None:
        docs = docs[: cfg.max_documents]
    split = _split_validation(docs, cfg.validation_fraction)
    if not split.train or not split.validation:
        raise UserError(f"{cfg.path or CORPUS_DIR}: too little text ({len(docs)} documents) for a training and a validation split")
    return split


def _hub_problem() -> str | None:
    """Why the Hugging Face hub cannot be used right now, or None. Takes at most a few seconds."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "on", "yes", "true"):
            return f"{var} is set"
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    url = urlparse(endpoint)
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=_HUB_TIMEOUT_S).close()
    except OSError as exc:
        return f"cannot reach {host} ({exc.strerror or exc})"
    return None


def _c4_error(reason: str) -> UserError:
    return UserError(
        f"cannot load C4 (allenai/c4) from the Hugging Face hub: {reason}. Use the offline corpus "
        "(remove trainer.config.data.corpus, or set it to shakespeare) or a local copy "
        "(trainer.config.data.path: a .txt, .jsonl or .parquet file or folder)"
    )


def load_c4_documents(cfg: DataConfig) -> Documents:
    """The first ``max_documents`` of C4 (en) train and ``validation_documents`` of its validation split."""
    import datasets

    problem = _hub_problem()
    if problem is not None:
        raise _c4_error(problem)
    _quiet_datasets()
    n_train = cfg.max_documents or 100_000
    try:
        out = []
        for split, n in (("train", n_train), ("validation", cfg.validation_documents)):
            stream = datasets.load_dataset("allenai/c4", "en", split=split, streaming=True)
            out.append([row["text"] for row in stream.take(n)])
    except OSError as exc:  # ConnectionError, HTTP errors, timeouts
        raise _c4_error(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    return Documents(*out)


def corpus_identity(cfg: DataConfig) -> dict:
    """What the token streams depend on, without loading them (local files are hashed)."""
    keep = {"validation_fraction": cfg.validation_fraction, "max_documents": cfg.max_documents}
    if cfg.path is None and cfg.corpus == "c4":
        return {"c4": "allenai/c4:en", "max_documents": cfg.max_documents or 100_000, "validation_documents": cfg.validation_documents}
    h = hashlib.sha256()
    files = _local_files(cfg)
    for f in files:
        h.update(f.name.encode() + b"\0")
        h.update(hashlib.sha256(f.read_bytes()).digest())
    if _format_of(files[0]) != "text":
        keep["text_field"] = cfg.text_field
    return {"files": h.hexdigest(), **keep}


# -- tokens ---------------------------------------------------------------------


@dataclass
class TokenizedCorpus:
    """Training and validation token streams plus the tokenizer that made them."""

    train: np.ndarray  # 1-D token ids, every document followed by EOS
    validation: np.ndarray
    tokenizer_json: str
    key: str  # hash of everything the streams depend on

    @property
    def vocab_size(self) -> int:
        return self.tokenizer().get_vocab_size()

    def tokenizer(self):
        from tokenizers import Tokenizer

        return Tokenizer.from_str(self.tokenizer_json)


def train_tokenizer(docs: list[str], vocab_size: int):
    """Byte-level BPE on ``docs``; deterministic for the same text and size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(docs, trainer, length=len(docs))
    return tok


def encode_stream(tok, docs: list[str]) -> np.ndarray:
    """All documents' tokens, each followed by EOS, as one array."""
    eos = tok.token_to_id(EOS)
    dtype = np.uint16 if tok.get_vocab_size() <= 2**16 else np.int32
    parts = []
    for enc in tok.encode_batch(docs, add_special_tokens=False):
        parts.append(np.asarray(enc.ids + [eos], dtype=dtype))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


def load_corpus(cfg: DataConfig, vocab_size: int) -> TokenizedCorpus:
    """Tokenized training and validation streams, from the cache or built (and cached)."""
    import tokenizers

    key = digest({"v": _FORMAT_VERSION, "corpus": corpus_identity(cfg), "vocab": vocab_size, "tokenizers": tokenizers.__version__})
    folder = cache_dir() / "corpus" / key[:24]
    if (folder / "tokens.npz").exists() and (folder / "tokenizer.json").exists():
        with np.load(folder / "tokens.npz") as z:
            return TokenizedCorpus(z["train"], z["validation"], (folder / "tokenizer.json").read_text(), key)
    writable_cache()  # before hours of tokenizing, and before `datasets` reports it as an unreadable corpus
    docs = load_c4_documents(cfg) if cfg.path is None and cfg.corpus == "c4" else load_local_documents(cfg)
    tok = train_tokenizer(docs.train, vocab_size)
    corpus = TokenizedCorpus(encode_stream(tok, docs.train), encode_stream(tok, docs.validation), tok.to_str(), key)

    def save_tokens(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, train=corpus.train, validation=corpus.validation)

    atomic_write(folder / "tokens.npz", save_tokens)
    atomic_write(folder / "tokenizer.json", lambda tmp: tmp.write_text(corpus.tokenizer_json))
    return corpus


# -- windows, shards, order -------------------------------------------------------


def num_windows(stream: np.ndarray, seq_len: int) -> int:
    """How many ``seq_len + 1``-token windows with stride ``seq_len`` fit in the stream."""
    return max((len(stream) - 1) // seq_len, 0)


def gather_windows(stream: np.ndarray, windows: np.ndarray, seq_len: int) -> torch.Tensor:
    """Token ids of the given windows, shape (len(windows), seq_len + 1), int64."""
    idx = np.asarray(windows, dtype=np.int64)[:, None] * seq_len + np.arange(seq_len + 1)
    return torch.from_numpy(stream[idx].astype(np.int64))


def make_shards(n_windows: int, num_shards: int, kind: str, rng: np.random.Generator) -> list[np.ndarray]:
    """Disjoint shards of window indices that together cover all ``n_windows``."""
    if n_windows < num_shards:
        raise UserError(f"the training text has {n_windows} sequences, fewer than the {num_shards} shards (workers)")
    order = rng.permutation(n_windows) if kind == "iid" else np.arange(n_windows)
    return [np.sort(s) if kind == "iid" else s for s in np.array_split(order, num_shards)]
