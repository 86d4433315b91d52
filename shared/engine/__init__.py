"""The generation engine: models, their loaders, compiled kernels, batches and sampling.

Used by the generation workers, the API (vocabularies and predict) and the `lstmgen` command;
no TensorFlow anywhere in it.
"""
