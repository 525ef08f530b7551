"""The pool worker: runs WARM attempts on a warm pool task (`python -m batchgate.worker`)."""
