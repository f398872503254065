"""Evidence readers: recognise logs and command outputs by content and turn them into Findings."""
