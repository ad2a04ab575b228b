"""The base layer: config, errors, events, files, state, models, data formats and encoding, QA items."""
