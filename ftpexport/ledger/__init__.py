"""The ledger: what was sent to whom, the crash journal, the seen cache and the webhook outbox."""

from .schema import SCHEMA_VERSION
from .sqlite import Delivery, FileState, Ledger, RefusalKind, Status, now

__all__ = ["SCHEMA_VERSION", "Delivery", "FileState", "Ledger", "RefusalKind", "Status", "now"]
