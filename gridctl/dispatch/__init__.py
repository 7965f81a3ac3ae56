"""Writing to equipment safely: one arbiter, leases, overrides, hands off, audit."""

from gridctl.dispatch.arbiter import Arbiter, DispatchSettings, WriteRequest
from gridctl.dispatch.audit import AuditEntry, AuditSink, MemoryAuditSink, Outcome

__all__ = ["Arbiter", "AuditEntry", "AuditSink", "DispatchSettings", "MemoryAuditSink", "Outcome", "WriteRequest"]
