"""Pure domain: models, chat-neutral blocks, redaction. No I/O, no SDK."""
