"""What the Lambda functions do: dispatch, track, sweep, cancel and the history feed, built from the
domain rules and the adapters."""
