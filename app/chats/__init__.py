"""Conversations and messages: the SQLite store and its exports."""
