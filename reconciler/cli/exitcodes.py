"""The exit codes of every `reconciler` command, in one place (README "Exit codes").

Scripts and schedulers branch on them, so they never change meaning: 2 is kept for
`plan --detailed-exitcode` alone, and a bad command line gets 64 (EX_USAGE of sysexits.h)
instead of argparse's own 2, which a caller could not tell from "there are changes".
"""

from __future__ import annotations

EXIT_OK = 0            # success; `plan --detailed-exitcode`: no changes
EXIT_ERROR = 1         # configuration, spec, state, dialer or CRM unavailable, guard, stale plan
EXIT_CHANGES = 2       # `plan --detailed-exitcode`: there are changes
EXIT_REJECTED = 3      # `apply`/`resync` finished, but the dialer rejected some rows
EXIT_STOPPED = 4       # `apply`/`resync` stopped on request (SIGTERM/SIGINT) after a step
EXIT_USAGE = 64        # the command line itself is wrong
