"""The warm pool worker: the entry point (`python -m batchgate.worker`) of a warm pool's tasks.

A pool task runs the batch's own image with this worker in front: it takes as many work messages as it
has free slots, claims each attempt (batchgate.domain.warm), runs the job as a child process (or a
fork of a preloaded parent), ships its output to the attempt's own log stream, reports its end through
`apply_task_event`, and keeps a heartbeat item per task (batchgate.domain.pools). Shipped in the
batch's image, never in the Lambda layer; it imports boto3, the standard library and batchgate's
domain and adapters only (never Powertools: a Lambda concern).

Modules, one job each:
- settings: what the worker reads from its environment;
- slot_loop: receive no more work than free slots, claim, start a run;
- claims: the claim of an offer, and why a refused or running attempt is not (or no longer) this task's;
- slots: which slot runs what;
- job_run: one attempt in one slot: start, watch (timeout, cancel, shutdown), stop, report;
- child_process: start a child (command or preload) and stop its process group;
- zygote: the preload run mode's single-threaded parent that forks each job;
- output_shipper: a child's output to its log stream;
- heartbeat: the task's heartbeat item and metrics, and stopping jobs decided elsewhere;
- served_batches: which batches run this task's image;
- protection: task scale-in protection while busy;
- worker: wiring, SIGTERM and the drain.
"""
