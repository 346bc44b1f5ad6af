"""`reconciler daemon`: scheduled reconciliation that runs for months.

- `runner`     one guarded run: lease, gather, plan, guards, apply, outage handling;
- `heartbeat`  renews the write lease from its own thread during a run;
- `outage`     capped exponential backoff between failing runs, logged once per outage;
- `scheduler`  APScheduler jobs per resource, triggers, SIGTERM/SIGINT;
- `metrics`    the daemon's prometheus_client registry: counters, collectors, build info;
- `endpoint`   /healthz, /metrics and POST /trigger on loopback.

Its settings (the `[daemon]` section) are `config.settings.DaemonSettings`, loaded with every
other section by `reconciler.config`; nothing below this package imports it.
"""
