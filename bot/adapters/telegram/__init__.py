"""The Telegram chat adapter (python-telegram-bot): ``html`` renders blocks as Telegram messages,
``sender`` keeps one forum topic or root message per incident, ``errors`` translates PTB's exceptions."""
