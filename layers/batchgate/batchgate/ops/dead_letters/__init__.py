"""The three dead-letter queues: look at what is in them, and send it back to be processed again.

- `jobs`: submit messages dispatch could not handle, sent back to the jobs queue.
- `track`: task state change events the track function did not take, sent to the function again.
- `history`: the stream records the history function kept failing on, read from the job table's
  stream again and sent to the function.
- `messages`: what they share, the messages through SQS (a peek; the bounded receive -> send ->
  delete loop of a redrive) and what a look or a redrive gives back.
- `queues`: `DeadLetters`, the three behind one object, as the CLI uses them.
"""

from batchgate.ops.dead_letters.history import HISTORY, StreamBatch, stream_batch_of
from batchgate.ops.dead_letters.jobs import JOBS
from batchgate.ops.dead_letters.messages import (
    DeadLetter,
    DeadLetterQueue,
    NotRedriven,
    RecordsGone,
    RedriveResult,
    RedriveStopped,
)
from batchgate.ops.dead_letters.queues import QUEUES, DeadLetters, summarize
from batchgate.ops.dead_letters.track import TRACK, task_event_of

__all__ = [
    "HISTORY",
    "JOBS",
    "QUEUES",
    "TRACK",
    "DeadLetter",
    "DeadLetterQueue",
    "DeadLetters",
    "NotRedriven",
    "RecordsGone",
    "RedriveResult",
    "RedriveStopped",
    "StreamBatch",
    "stream_batch_of",
    "summarize",
    "task_event_of",
]
