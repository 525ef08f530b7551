"""`batchgate`: the ops command line.

From a job id, or a batch name and a time, to what happened, why, and the logs; plus submit, cancel,
retry, statistics, the what-if replay and the dead-letter queues.

- `group`: the `batchgate` group, its commands, error -> exit code mapping, the lazily loaded groups
  (`local`), and `main`, the console script.
- `context` (ctx.obj: target, clock, AWS session, console), `target` (the options that say which
  stack), `options` (options the commands share, and the job they select), `exits` (the exit codes and
  the errors that end a command with one).
- One module per command group: `jobs` (jobs, show), `logs`, `stats`, `whatif`, `submit` (submit,
  cancel, retry), `dlq` (dlq list, dlq redrive). They parse options and call the ops modules
  (job_search, job_views, stats, resubmit, logs, dead_letters) and the services (cancel).
- `render`: what the commands print, rich tables and text or JSON, one module per command group.
"""

from batchgate.ops.cli.context import AppContext
from batchgate.ops.cli.group import BatchgateGroup, cli, main

__all__ = ["AppContext", "BatchgateGroup", "cli", "main"]
