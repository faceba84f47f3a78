"""switchboard.agent: the LangGraph loop, storage, SDK and CLI (the CLI lives in ``cli.py``)."""
