"""The CRM database, read-only: desired users, lists and leads."""
