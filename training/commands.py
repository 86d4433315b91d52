"""The `train` and `export` verbs of the lstmgen command (TensorFlow loads only when they run)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from training.config import MODES, TrainConfig

DEFAULTS = TrainConfig()
EXPORT_FORMATS = ("tfjs", "keras")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `train` and `export` sub-commands to the lstmgen parser."""
    _add_train(subparsers)
    _add_export(subparsers)


def _add_train(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "train",
        help="train a model on a text file",
        description="Train a character LSTM on a UTF-8 text file and save it as a model folder "
        "(model.keras, vocab.json, training.json). Losses are shown in bits per character.",
    )
    parser.add_argument("corpus", type=Path, metavar="CORPUS.txt", help="UTF-8 text to learn")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="model folder")
    parser.add_argument(
        "--layers",
        type=_layers,
        metavar="U,U",
        help=f"LSTM units per layer, bottom first (default {_joined(DEFAULTS.layers)})",
    )
    parser.add_argument(
        "--embedding-dim",
        type=_count(0),
        metavar="E",
        help=f"size of the learned character vectors; 0 for one-hot input "
        f"(default {DEFAULTS.embedding_dim})",
    )
    parser.add_argument(
        "--mode",
        choices=MODES,
        help="stateful: a loss at every position, generation carries state (default); "
        "window: predict the character after a window of --seq-len, as the Keras example",
    )
    parser.add_argument(
        "--seq-len",
        type=_count(1),
        metavar="L",
        help=f"characters per training sequence, or the window (default {DEFAULTS.seq_len})",
    )
    parser.add_argument(
        "--step",
        type=_count(1),
        help=f"window mode: characters between window starts (default {DEFAULTS.step})",
    )
    parser.add_argument(
        "--epochs",
        type=_count(1),
        metavar="N",
        help=f"passes over the text to run now (default {DEFAULTS.epochs})",
    )
    parser.add_argument(
        "--batch-size",
        type=_count(1),
        metavar="B",
        help=f"sequences per step (default {DEFAULTS.batch_size})",
    )
    parser.add_argument(
        "--learning-rate",
        type=float,
        metavar="LR",
        help=f"Adam step size (default {DEFAULTS.learning_rate})",
    )
    parser.add_argument(
        "--validation-split",
        type=float,
        metavar="F",
        help=f"fraction held out from the end of the text (default {DEFAULTS.validation_split})",
    )
    parser.add_argument(
        "--max-chars", type=_count(1), metavar="N", help="use only the first N characters"
    )
    parser.add_argument(
        "--max-vocab",
        type=_count(2),
        metavar="N",
        help=f"refuse texts with more distinct characters (default {DEFAULTS.max_vocab})",
    )
    parser.add_argument(
        "--random-seed",
        type=_count(0),
        metavar="S",
        help=f"repeatable initialisation and shuffling (default {DEFAULTS.random_seed})",
    )
    parser.add_argument(
        "--resume",
        type=Path,
        metavar="MODEL",
        help="continue training this model (any format the engine loads): its architecture "
        "and vocabulary stay, and unset settings default to its last run's",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(handler=run_train)


def _add_export(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "export",
        help="convert a model to TensorFlow.js or the project's Keras format",
        description="Write any loadable model as a TensorFlow.js layers model (model.json, "
        "weight shards, charset.json) or as a project model folder (model.keras, vocab.json).",
    )
    parser.add_argument("model", type=Path, metavar="MODEL", help="model folder or file")
    parser.add_argument("--format", choices=EXPORT_FORMATS, required=True, dest="export_format")
    parser.add_argument("out", type=Path, metavar="OUT_DIR", help="folder to write")
    parser.set_defaults(handler=run_export)


def _layers(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected positive sizes like 128,128, got {text!r}")
    return sizes


def _count(minimum: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    return parse


def _joined(sizes: tuple[int, ...]) -> str:
    return ",".join(map(str, sizes))


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    """Return the training settings given on the command line (unset ones are left out)."""
    names = (
        "layers", "embedding_dim", "mode", "seq_len", "step", "epochs", "batch_size",
        "learning_rate", "validation_split", "max_chars", "max_vocab", "random_seed",
    )  # fmt: skip
    values = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    if values.get("embedding_dim") == 0:
        values["embedding_dim"] = None  # one-hot input
    return values


def run_train(args: argparse.Namespace) -> int:
    """Train (or continue) a model and print where it went and its losses."""
    from training.train import train

    result = train(
        args.corpus, args.out, overrides_from(args), resume=args.resume, progress=not args.quiet
    )
    val = "n/a" if result.val_loss_bpc is None else f"{result.val_loss_bpc:.3f}"
    print(
        f"saved {result.out_dir}: {result.epochs_total} epochs in all, loss "
        f"{result.loss_bpc:.3f} bits/char, validation {val} bits/char ({result.seconds:.0f} s)"
    )
    return 0


def run_export(args: argparse.Namespace) -> int:
    """Convert a model and report how closely the written one predicts like the original."""
    from training.export import export_model

    notes, change = export_model(args.model, args.export_format, args.out)
    for note in notes:
        print(f"note: {note}")
    print(f"wrote {args.out} ({args.export_format}); largest probability change {change:.2g}")
    return 0
