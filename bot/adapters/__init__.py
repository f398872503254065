"""Adapters at the border: terminal rendering now; SSH, HTTP and chat platforms later."""
