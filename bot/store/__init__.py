"""The store: one interface (ConversationStore) over SQLite, the embedded default, or PostgreSQL for several processes."""

from bot.store.conversations import ConversationInfo, ConversationStore, ForgetReport, StoredTurn
from bot.store.health import StoreRefused, StoreUnavailable

__all__ = ["ConversationInfo", "ConversationStore", "ForgetReport", "StoreRefused", "StoreUnavailable", "StoredTurn"]
