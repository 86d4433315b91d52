"""The local `lstmgen` verbs: generate, predict and inspect with a model on this machine."""

from __future__ import annotations

import argparse
import json
from typing import Any

from shared.engine.batch import generate, predict
from shared.engine.model import LSTMModel
from shared.engine.registry import ModelRegistry
from shared.engine.sampling import SamplingParams

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}


def unescape(text: str) -> str:
    """Turn the escapes \\n, \\t, \\r and \\\\ of a command-line argument into characters."""
    out, chars = [], iter(text)
    for char in chars:
        if char == "\\":
            following = next(chars, "")
            out.append(_ESCAPES.get(following, "\\" + following))
        else:
            out.append(char)
    return "".join(out)


def load(spec: str) -> LSTMModel:
    """Load a model from a path or a name in the model directory."""
    from shared.settings import get_settings

    return ModelRegistry(get_settings().model_dir).load(spec)


def _print_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False))


def _generate(args: argparse.Namespace) -> int:
    model = load(args.model)
    params = SamplingParams(
        length=model.defaults.length if args.length is None else args.length,
        temperature=model.defaults.temperature if args.temperature is None else args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        stop=tuple(unescape(s) for s in args.stop),
    )
    seed = unescape(args.seed)
    result = generate(
        model, seed, params, random_seed=args.random_seed, n=args.n, unknown=args.unknown_chars
    )
    if not args.json:
        print("\n\n".join(result.texts))
        return 0
    report: dict[str, Any] = {"model": model.name, "seed": seed or model.defaults.seed}
    if args.n == 1:
        report |= {"text": result.text, "finish_reason": str(result.finish_reasons[0])}
    else:
        report |= {"texts": result.texts, "finish_reasons": [str(r) for r in result.finish_reasons]}
    report |= {"random_seed": result.random_seed, "length": params.length}
    report |= {"temperature": params.temperature, "top_k": params.top_k, "top_p": params.top_p}
    _print_json(report)
    return 0


def _predict(args: argparse.Namespace) -> int:
    model = load(args.model)
    probs = predict(model, unescape(args.seed), args.temperature, args.unknown_chars)
    if args.top is not None:
        probs = probs[: args.top]
    if args.json:
        _print_json(
            {"probabilities": [{"char": p.char, "probability": p.probability} for p in probs]}
        )
    else:
        for p in probs:
            print(f"{p.probability:.6f}\t{json.dumps(p.char, ensure_ascii=False)}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    properties = load(args.model).properties()
    if args.json:
        _print_json(properties)
        return 0
    for key, value in properties.items():
        shown = "".join(value) if key == "vocab" else value
        print(f"{key}: {json.dumps(shown, ensure_ascii=False)}")
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def register(subparsers: Any) -> None:
    """Add the generate, predict and inspect verbs to the lstmgen parser."""
    unknown = {"choices": ["error", "drop", "lowercase"], "default": "error"}
    unknown_help = "characters of the seed the model lacks: fail, drop them, or lowercase first"
    gen = subparsers.add_parser("generate", help="generate text from a seed")
    gen.add_argument("model", help="model folder or file, or a name in the model directory")
    gen.add_argument("--seed", default="", help="text to start from (default: the model's)")
    gen.add_argument("--length", type=int, help="characters to generate (default: the model's)")
    gen.add_argument("--temperature", type=float, help="0 = greedy (default: the model's)")
    gen.add_argument("--top-k", type=_positive, help="sample among the k likeliest characters")
    gen.add_argument("--top-p", type=float, help="sample among the likeliest mass p")
    gen.add_argument("--stop", action="append", default=[], help="end at this text (repeatable)")
    gen.add_argument("--random-seed", type=int, help="repeat a run (default: fresh, reported)")
    gen.add_argument("--n", type=_positive, default=1, help="independent samples")
    gen.add_argument("--unknown-chars", help=unknown_help, **unknown)
    gen.add_argument("--json", action="store_true", help="print a JSON object")
    gen.set_defaults(handler=_generate)
    pre = subparsers.add_parser("predict", help="next-character probabilities after a seed")
    pre.add_argument("model", help="model folder or file, or a name in the model directory")
    pre.add_argument("--seed", default="", help="text to start from (default: the model's)")
    pre.add_argument("--temperature", type=float, default=1.0, help="0 = all mass on the argmax")
    pre.add_argument("--top", type=_positive, help="show only the N likeliest characters")
    pre.add_argument("--unknown-chars", help=unknown_help, **unknown)
    pre.add_argument("--json", action="store_true", help="print a JSON object")
    pre.set_defaults(handler=_predict)
    ins = subparsers.add_parser("inspect", help="show a model's properties")
    ins.add_argument("model", help="model folder or file, or a name in the model directory")
    ins.add_argument("--json", action="store_true", help="print a JSON object")
    ins.set_defaults(handler=_inspect)
