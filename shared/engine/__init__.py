"""The generation engine: models, loaders, kernels, batches, sampling; for workers, API and CLI."""
