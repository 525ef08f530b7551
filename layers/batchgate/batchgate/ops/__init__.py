"""Ops tooling: the `batchgate` command, job search and views, stats, dead-letter redrive, stack
discovery, the embedded local stack and what-if. Never shipped in the Lambda layer; the runtime
packages never import it."""
