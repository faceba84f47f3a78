"""switchboard.agent: the LangGraph loop, storage, SDK and CLI (the CLI lives in ``cli.py``).

``from switchboard.agent import Agent, Client, Turn`` (loaded on first use: the CLI imports this
package and should not pay for LangGraph when it does not run the agent).
"""

from typing import Any

__all__ = ["Agent", "Client", "Turn"]


def __getattr__(name: str) -> Any:
    if name == "Client":
        from .client import Client

        return Client
    if name in __all__:
        from . import sdk

        return getattr(sdk, name)
    raise AttributeError(f"module 'switchboard.agent' has no attribute {name!r}")
