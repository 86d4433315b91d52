"""Build the Keras network: characters in, stacked LSTMs, a softmax over the vocabulary out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shared.engine.model import LSTMModel, Mode
from training.backend import keras
from training.convert import KERAS3_ACTIVATIONS, lstm_weights, rescale_note

CLIP_NORM = 5.0  # gradient norm clip, as char-rnn does: LSTM gradients can spike


def build_network(
    vocab_size: int,
    layers: Sequence[int],
    *,
    embedding_dim: int | None,
    mode: str,
    window: int | None = None,
    recurrent_activation: str = "sigmoid",
) -> Any:
    """Return a Sequential model; embedding_dim None means one-hot float input."""
    length = window if mode == Mode.WINDOW else None
    stack: list[Any]
    if embedding_dim is None:
        stack = [keras.Input(shape=(length, vocab_size), name="chars")]
    else:
        stack = [
            keras.Input(shape=(length,), dtype="int32", name="chars"),
            keras.layers.Embedding(vocab_size, embedding_dim, name="embedding"),
        ]
    for index, units in enumerate(layers):
        # Window models read only the last position, so their top LSTM returns one vector.
        sequences = mode == Mode.STATEFUL or index < len(layers) - 1
        stack.append(
            keras.layers.LSTM(
                units,
                return_sequences=sequences,
                recurrent_activation=recurrent_activation,
                name=f"lstm_{index + 1}",
            )
        )
    stack.append(keras.layers.Dense(vocab_size, activation="softmax", name="output"))
    return keras.Sequential(stack, name="lstmgen")


def compile_network(network: Any, learning_rate: float) -> None:
    """Attach the optimizer and the per-character cross-entropy loss."""
    network.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate, clipnorm=CLIP_NORM),
        loss="sparse_categorical_crossentropy",
    )


def network_from_model(model: LSTMModel) -> tuple[Any, list[str]]:
    """Build a Keras network holding a loaded model's weights; return it and any notes."""
    activation, scale = KERAS3_ACTIVATIONS[model.recurrent_activation]
    network = build_network(
        model.vocab_size,
        [layer.units for layer in model.layers],
        embedding_dim=None if model.embedding is None else int(model.embedding.shape[1]),
        mode=model.mode,
        window=model.window,
        recurrent_activation=activation,
    )
    weights = [] if model.embedding is None else [model.embedding]
    for layer in model.layers:
        weights.extend(lstm_weights(layer, scale))
    network.set_weights([*weights, model.output_kernel, model.output_bias])
    notes = [] if scale == 1.0 else [rescale_note(model.recurrent_activation, activation, scale)]
    return network, notes
