"""Code used by both the API and the workers: settings, models, the numpy engine, job records."""
