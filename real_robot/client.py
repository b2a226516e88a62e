"""Moved to `lara.serving.client` (evaluation, the ROS node and `lara serve`'s users all call the policy server);
this name stays for code that imports it from here."""

from lara.serving.client import PolicyClient, RemotePolicy, ServerError, ServerUnavailable, check_reply

__all__ = ["PolicyClient", "RemotePolicy", "ServerError", "ServerUnavailable", "check_reply"]
