"""The ledger: what was sent to whom, the crash journal, the seen cache and the webhook outbox."""

from .base import Delivery, FileState, RefusalKind, Status, now
from .schema import SCHEMA_VERSION
from .sqlite import Ledger

__all__ = ["SCHEMA_VERSION", "Delivery", "FileState", "Ledger", "RefusalKind", "Status", "now"]
