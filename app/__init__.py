"""Hearth core: private, offline chat with open language models. Never imports Qt."""

import os

__version__ = "0.1.0"

# Never telemetry: huggingface_hub otherwise adds usage details to its user agent and fetches an
# "agent harness" registry from the Hub. Set before huggingface_hub is first imported (it reads
# this at import); a user's explicit setting wins.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
