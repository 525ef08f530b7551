"""The job model and the rules: what a job may become, which batches exist, where a job runs and why.

Pure code: no AWS calls. Adapters and services import it; it imports nothing of theirs but the data
types of the ECS adapter.
"""
