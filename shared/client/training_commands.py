"""`lstmgen trainings create|status|cancel`: train a model on a server.

`create` sends the corpus file as a multipart form, so its size is limited only by the
server's `LSTMGEN_MAX_TRAINING_CHARS`.

`--follow` shows a bar of the steps of each epoch with the losses until the training ends.
Exit status: 0 the training succeeded (or the request was made), 1 it ended otherwise, 2 the
request failed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from shared.client.commands import _client, _guarded, _print_json
from shared.client.http import Client

FOLLOW_POLL_S = 0.5  # how often `--follow` reads the training
FINAL = ("succeeded", "failed", "canceled", "timed_out", "expired")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `lstmgen trainings` to the command line."""
    trainings = subparsers.add_parser("trainings", help="train models on a server")
    verbs = trainings.add_subparsers(dest="verb", required=True, metavar="VERB")
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("server")
    group.add_argument("--url", help="server URL (default: LSTMGEN_PUBLIC_URL or host:port)")
    group.add_argument("--api-key", help="API key (default: LSTMGEN_API_KEY)")
    group.add_argument("--timeout", type=float, default=30.0, help="HTTP timeout in seconds")
    group.add_argument("--json", action="store_true", help="print JSON instead of text")
    common.add_argument("--follow", action="store_true", help="show progress until it ends")

    create = verbs.add_parser("create", parents=[common], help="train a model on a text file")
    create.add_argument("name", help="the name the trained model is registered under")
    create.add_argument("corpus", type=Path, nargs="?", help="a UTF-8 text file (or --file)")
    create.add_argument("--file", type=Path, help="the UTF-8 text file to train on")
    create.add_argument("--layers", default="128", help="units per LSTM layer, comma-separated")
    create.add_argument("--epochs", type=int, default=1)
    create.add_argument("--seq-len", type=int, default=100)
    create.add_argument("--batch-size", type=int, default=64)
    create.add_argument("--learning-rate", type=float, default=0.002)
    create.add_argument("--validation-split", type=float, default=0.1)
    create.add_argument("--base-model", help="continue training this model")
    create.add_argument("--webhook", help="a URL that receives the start and completed events")
    create.set_defaults(handler=_guarded(_create))

    for verb, what in (("status", "show a training"), ("cancel", "cancel a training")):
        parser = verbs.add_parser(verb, parents=[common], help=what)
        parser.add_argument("id")
        parser.set_defaults(handler=_guarded(_status if verb == "status" else _cancel))


def _create(args: argparse.Namespace) -> int:
    corpus = args.file or args.corpus
    if corpus is None or (args.file and args.corpus):
        print("lstmgen trainings create: error: give the corpus once, as --file PATH",
              file=sys.stderr)  # fmt: skip
        return 2
    body: dict[str, Any] = {
        "name": args.name,
        "layers": [int(units) for units in args.layers.split(",")],
        "epochs": args.epochs,
        "seq_len": args.seq_len,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "validation_split": args.validation_split,
    }
    if args.base_model:
        body["base_model"] = args.base_model
    if args.webhook:
        body["webhook"] = args.webhook
    with _client(args) as client:
        return _report(args, client, client.create_training(body, file=corpus))


def _status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        return _report(args, client, client.training(args.id))


def _cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        return _report(args, client, client.cancel_training(args.id))


def _report(args: argparse.Namespace, client: Client, training: dict[str, Any]) -> int:
    if args.follow:
        training = _follow(client, training)
    if args.json:
        _print_json(training)
    else:
        print(_summary(training))
    if not args.follow:
        return 0
    return 0 if training["status"] == "succeeded" else 1


def _follow(client: Client, training: dict[str, Any]) -> dict[str, Any]:
    """Show a bar per epoch until the training is final; return it then."""
    bar: tqdm[Any] | None = None
    epoch = -1
    while True:
        progress = training["progress"]
        current = min(progress["epoch"], progress["epochs"] - 1)  # a finished run: its last
        if progress["steps"] and current != epoch:
            if bar is not None:
                bar.close()
            epoch = current
            desc = f"epoch {epoch + 1}/{progress['epochs']}"
            bar = tqdm(total=progress["steps"], desc=desc, unit="step", file=sys.stderr)
        if bar is not None:
            ended = progress["epoch"] > epoch  # the bar's epoch is over
            bar.n = progress["steps"] if ended else min(progress["step"], progress["steps"])
            if training["metrics"]:
                bar.set_postfix_str(f"loss {training['metrics'][-1]['loss_bpc']:.3f} bpc")
            bar.refresh()
        if training["status"] in FINAL:
            break
        time.sleep(FOLLOW_POLL_S)
        training = client.training(training["id"])
    if bar is not None:
        bar.close()
    return training


def _summary(training: dict[str, Any]) -> str:
    progress = training["progress"]
    lines = [
        f"{training['id']}  {training['status']}  model {training['name']}  "
        f"epoch {progress['epoch']}/{progress['epochs']}, "
        f"step {progress['step']}/{progress['steps']}"
    ]
    for m in training["metrics"]:
        val = "-" if m["val_loss_bpc"] is None else f"{m['val_loss_bpc']:.3f}"
        lines.append(f"  epoch {m['epoch']}: loss {m['loss_bpc']:.3f} bpc, val_loss {val} bpc")
    if training.get("error"):
        lines.append(f"  error: {training['error']}")
    return "\n".join(lines)
