"""Train a character LSTM on a text file, or continue training a saved model."""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from tqdm import tqdm

from shared.engine.loaders import load_model
from training.backend import keras
from training.config import TrainConfig
from training.corpus import Corpus, CorpusError, read_corpus
from training.data import Examples, TooShortError, encode, training_sets
from training.errors import TrainingError
from training.modelio import check_writable, is_project_model, save_project_model
from training.network import build_network, compile_network, network_from_model

FORMAT_VERSION = 1
# Settings a resumed run takes from the run that made the model unless given again.
INHERITED = ("seq_len", "step", "batch_size", "learning_rate", "validation_split", "epochs")


def bits(nats: float) -> float:
    """Convert a cross-entropy in nats per character to bits per character."""
    return nats / math.log(2)


@dataclass(frozen=True)
class Start:
    """A saved model to continue training, and what it was trained with."""

    source: Path
    network: Any
    vocab: tuple[str, ...]
    architecture: dict[str, Any]  # layers, embedding_dim, mode (and seq_len for window models)
    training: dict[str, Any]  # the model's training.json, {} for other formats
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced."""

    out_dir: Path
    epochs: int  # epochs run now
    epochs_total: int  # including those of a resumed model
    loss_bpc: float  # training loss of the last epoch, bits per character
    val_loss_bpc: float | None  # validation loss after the last epoch
    seconds: float


def load_start(path: Path) -> Start:
    """Load any model the engine can load as a Keras network to train further."""
    model = load_model(path)  # the numpy loader checks the files and names what is wrong
    architecture: dict[str, Any] = {
        "layers": tuple(layer.units for layer in model.layers),
        "embedding_dim": None if model.embedding is None else int(model.embedding.shape[1]),
        "mode": str(model.mode),
    }
    if model.window is not None:
        architecture["seq_len"] = model.window
    training = model.metadata.get("training", {}) if is_project_model(path) else {}
    network, notes = network_from_model(model)
    return Start(path, network, model.vocab, architecture, training, notes)


def resume_config(overrides: Mapping[str, Any], start: Start) -> TrainConfig:
    """Settings for continuing a model: its architecture, its last run's settings, overrides."""
    for key, value in start.architecture.items():
        if key in overrides and overrides[key] != value:
            raise TrainingError(
                start.source,
                f"the model has {key} {_show(value)}, not {_show(overrides[key])}: "
                "a resumed model keeps its architecture",
            )
    previous = start.training.get("parameters", {})
    inherited = {key: previous[key] for key in INHERITED if key in previous}
    known = {f.name for f in fields(TrainConfig)}
    values = {**inherited, **start.architecture, **overrides}
    return TrainConfig(**{k: v for k, v in values.items() if k in known})


def _show(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple | list) else str(value)


def train(
    corpus_path: Path,
    out_dir: Path,
    overrides: Mapping[str, Any],
    *,
    resume: Path | None = None,
    progress: bool = True,
    callbacks: Sequence[Any] = (),
) -> TrainResult:
    """Check every input, train, and save the model folder after each epoch; `callbacks`
    are more Keras callbacks (one may stop the run by raising)."""
    check_writable(out_dir)
    limits = {k: overrides[k] for k in ("max_chars", "max_vocab") if k in overrides}
    corpus = read_corpus(corpus_path, **limits)
    start = load_start(resume) if resume is not None else None
    config = resume_config(overrides, start) if start else TrainConfig(**overrides)
    vocab = _vocabulary(corpus, start)
    try:
        train_set, val_set = training_sets(
            encode(corpus.text, vocab),
            config.mode,
            config.seq_len,
            config.step,
            config.validation_split,
        )
    except TooShortError as error:
        raise CorpusError(corpus.path, str(error)) from None
    keras.utils.set_random_seed(config.random_seed)
    network = _network(config, vocab, start)
    record = _Record(corpus, config, vocab, start, train_set, val_set)
    began = time.monotonic()
    network.fit(
        _dataset(train_set, config, network, shuffle=True),
        validation_data=None if val_set is None else _dataset(val_set, config, network),
        epochs=config.epochs,
        shuffle=False,  # the dataset shuffles itself, with the run's seed
        verbose=0,
        callbacks=[
            _EpochBar(
                config.epochs,
                math.ceil(len(train_set) / config.batch_size),
                progress,
                lambda epoch, logs: save_project_model(
                    out_dir, network, vocab, record.update(epoch, logs, time.monotonic() - began)
                ),
            ),
            *callbacks,
        ],
    )
    final = record.history[-1]
    return TrainResult(
        out_dir,
        config.epochs,
        final["epoch"],
        final["loss_bpc"],
        final["val_loss_bpc"],
        time.monotonic() - began,
    )


def _vocabulary(corpus: Corpus, start: Start | None) -> tuple[str, ...]:
    if start is None:
        return corpus.charset
    known = {char for char in start.vocab if len(char) == 1}
    missing = [char for char in corpus.charset if char not in known]
    if missing:
        shown = ", ".join(repr(c) for c in missing[:20])
        more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
        raise CorpusError(
            corpus.path,
            f"has characters the model {start.source} does not know: {shown}{more} "
            "(a resumed model keeps its vocabulary; clean the text or train a new model)",
        )
    return start.vocab


def _network(config: TrainConfig, vocab: tuple[str, ...], start: Start | None) -> Any:
    if start is None:
        network = build_network(
            len(vocab),
            config.layers,
            embedding_dim=config.embedding_dim,
            mode=config.mode,
            window=config.seq_len,
        )
    else:
        network = start.network
    # Saved models hold no optimizer state, so a resumed run starts a fresh optimizer.
    compile_network(network, config.learning_rate)
    return network


def _dataset(examples: Examples, config: TrainConfig, network: Any, shuffle: bool = False) -> Any:
    """Batch examples; one-hot networks get their ids expanded batch by batch."""
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((examples.x, examples.y))
    if shuffle:
        data = data.shuffle(len(examples), seed=config.random_seed, reshuffle_each_iteration=True)
    data = data.batch(config.batch_size)
    vocab_size = int(network.output_shape[-1])
    if len(network.input_shape) == 3:  # (batch, time, vocab): one-hot input
        data = data.map(lambda x, y: (tf.one_hot(x, vocab_size), y))
    return data.prefetch(2)


class _Record:
    """The training.json being built up epoch by epoch."""

    def __init__(
        self,
        corpus: Corpus,
        config: TrainConfig,
        vocab: tuple[str, ...],
        start: Start | None,
        train_set: Examples,
        val_set: Examples | None,
    ) -> None:
        previous = start.training if start else {}
        self.history: list[dict[str, Any]] = list(previous.get("history", []))
        self.first_epoch = int(previous.get("epochs_trained", 0))
        self.base: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "mode": config.mode,
            "window": config.seq_len if config.mode == "window" else None,
            "vocab_size": len(vocab),
            "charset": "".join(corpus.charset),
            "corpus": {
                "path": str(corpus.path),
                "sha256": corpus.sha256,
                "size_bytes": corpus.size_bytes,
                "chars_used": len(corpus.text),
                "train_examples": len(train_set),
                "validation_examples": 0 if val_set is None else len(val_set),
            },
            "parameters": config.as_json(),
            "resumed_from": None
            if start is None
            else {
                "path": str(start.source),
                "epochs_trained": self.first_epoch,
                "notes": start.notes,
                "previous_corpus": previous.get("corpus"),
            },
            "versions": {
                "python": platform.python_version(),
                "keras": keras.__version__,
            },
        }

    def update(self, epoch: int, logs: Mapping[str, float], seconds: float) -> dict[str, Any]:
        """Add one finished epoch and return the whole record."""
        val = logs.get("val_loss")
        self.history.append(
            {
                "epoch": self.first_epoch + epoch + 1,
                "loss_bpc": round(bits(logs["loss"]), 5),
                "val_loss_bpc": None if val is None else round(bits(val), 5),
            }
        )
        last = self.history[-1]
        return {
            **self.base,
            "epochs_trained": last["epoch"],
            "final": {"loss_bpc": last["loss_bpc"], "val_loss_bpc": last["val_loss_bpc"]},
            "seconds": round(seconds, 1),
            "history": self.history,
        }


EpochHook = Callable[[int, Mapping[str, float]], None]


class _EpochBar(keras.callbacks.Callback):  # type: ignore[misc]
    """Show a bar per epoch with the loss in bits per character; call a hook after each."""

    def __init__(self, epochs: int, steps: int, enabled: bool, on_epoch: EpochHook) -> None:
        super().__init__()
        self.epochs, self.steps, self.enabled, self.on_epoch = epochs, steps, enabled, on_epoch
        self.bar: tqdm[Any] | None = None

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        self.bar = tqdm(
            total=self.steps,
            desc=f"epoch {epoch + 1}/{self.epochs}",
            unit="batch",
            disable=not self.enabled,
            dynamic_ncols=True,
        )

    def on_train_batch_end(self, batch: int, logs: Mapping[str, float] | None = None) -> None:
        if self.bar is not None:
            self.bar.update(1)
            if logs and batch % 10 == 0:
                self.bar.set_postfix_str(f"loss {bits(logs['loss']):.3f} bpc", refresh=False)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        logs = logs or {}
        if self.bar is not None:
            val = logs.get("val_loss")
            shown = f"loss {bits(logs['loss']):.3f} bpc"
            if val is not None:
                shown += f", val_loss {bits(val):.3f} bpc"
            self.bar.set_postfix_str(shown)
            self.bar.close()
        self.on_epoch(epoch, logs)
