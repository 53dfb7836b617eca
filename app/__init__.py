"""Hearth core: private, offline chat with open language models. Never imports Qt."""

__version__ = "0.1.0"
