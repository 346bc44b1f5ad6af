"""reconciler: keep a call-centre dialer in step with a CRM database."""

__version__ = "0.1.0"
