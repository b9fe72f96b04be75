"""DanQ and random-dropout DanQ: data, validation, model, training, evaluation and registry."""

__version__ = "0.1.0"
