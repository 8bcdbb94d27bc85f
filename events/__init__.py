"""syncyard's public contract: commands, results, events, subjects and codec.

Data only; imports nothing of ours.
"""

from events.base import DomainEvent, Message
from events.commands import (
    COMMAND_TYPES,
    Command,
    GetAccounts,
    MapInstitution,
    RegisterConnection,
    SyncTransactions,
)
from events.connection import (
    ConnectionAttempted,
    ConnectionRegistered,
    ProviderFailed,
    ProviderLinked,
    SyncCompleted,
    SyncFailed,
)
from events.credentials import CredentialStored
from events.errors import ERROR_TYPES, ErrorInfo, ErrorType
from events.results import CommandResult

__all__ = [
    "COMMAND_TYPES",
    "ERROR_TYPES",
    "Command",
    "CommandResult",
    "ConnectionAttempted",
    "ConnectionRegistered",
    "CredentialStored",
    "DomainEvent",
    "ErrorInfo",
    "ErrorType",
    "GetAccounts",
    "MapInstitution",
    "Message",
    "ProviderFailed",
    "ProviderLinked",
    "RegisterConnection",
    "SyncCompleted",
    "SyncFailed",
    "SyncTransactions",
]
