"""Train, continue and export character LSTM models (the only package that uses TensorFlow)."""
