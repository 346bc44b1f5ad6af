"""The demo: a sample CRM and the whole loop against the sandbox dialer."""
