"""Hearth's OpenAI-compatible API server (``hearth serve``, Settings → Local server)."""
