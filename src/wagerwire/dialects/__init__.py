"""Dialects: sans-I/O codecs mapping one wire format to hub operations and back."""
