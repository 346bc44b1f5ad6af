"""The edges: the CRM database, the state database and the dialer's API."""
