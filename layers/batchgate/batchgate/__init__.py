"""batchgate: run an application's batch commands as ECS tasks, driven by a queue, tracked in DynamoDB."""

__version__ = "0.1.0"
