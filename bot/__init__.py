"""Atelier: a self-hosted generative bot for Discord and Slack."""

__version__ = "0.1.0"
