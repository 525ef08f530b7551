"""The AWS adapters: the only modules that touch boto3 (clients, the job and history tables, ECS,
queues) and Powertools' telemetry."""
