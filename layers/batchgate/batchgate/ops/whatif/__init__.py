"""`batchgate whatif`: replay a job history under each launch policy and compare cost and start latency.

One concept per module: `trace` (the jobs to replay, from a file or from the job table), `sample_trace`
(the shipped HR SaaS month), `model` (the settings of the cost and latency models), `replay` (the
deterministic discrete-event replay), `policies` (where each policy runs a job; the adaptive one asks
`batchgate.domain.strategy.plan_launch`, the adaptive-warm one with a warm pool), `warm_pool` (a warm
pool's tasks over the window: schedule, slots, Spot interruptions, bill), `outcome` (the per-policy
figures), `report` (markdown) and `plots` (PNG, matplotlib imported only when plots are written). See
docs/whatif.md.
"""
