"""What the template expects to exist already (its parameters): an ECS cluster with the catalog's task
definitions and their log groups, and a network for awsvpc tasks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from batchgate.domain.catalog import Catalog
from batchgate.ops.local.endpoint import ACCOUNT_ID, LocalAws
from batchgate.ops.pool_template import image_parameter

CAPACITY_PROVIDERS = ["FARGATE", "FARGATE_SPOT"]
LOG_STREAM_PREFIX = "batch"


@dataclass(frozen=True)
class LocalCluster:
    arn: str
    name: str
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    task_definition_arns: dict[str, str]  # family -> ARN of the registered revision
    task_role_arn: str
    # Pool<Name>Image -> the pool's image: its batches' family's image (the local stack runs no pool).
    pool_images: Mapping[str, str] = field(default_factory=dict)

    def template_parameters(self) -> dict[str, str | list[str]]:
        """The template's parameters that describe the environment it is deployed into."""
        return {
            **self.pool_images,
            "PoolExecutionRoleArn": self.task_role_arn,
            "ClusterArn": self.arn,
            "Subnets": list(self.subnets),
            "SecurityGroups": list(self.security_groups),
            "TaskDefinitionArns": [
                f"{arn.rsplit(':', 1)[0]}:*" for arn in self.task_definition_arns.values()
            ],
            "PassRoleArns": [self.task_role_arn],
        }


def log_group_of(family: str) -> str:
    return f"/ecs/{family}"


def families(catalog: Catalog) -> list[str]:
    """The catalog's task definition families, in catalog order."""
    return list(dict.fromkeys(spec.task_definition.split(":", 1)[0] for spec in catalog.batches.values()))


def default_image(family: str, region: str) -> str:
    """The image a family's task definition names unless `--image` gives one: where an ECR push would
    put it. A local Docker engine that has an image of that name runs it."""
    return f"{ACCOUNT_ID}.dkr.ecr.{region}.amazonaws.com/{family}:local"


def create_cluster(
    aws: LocalAws, name: str, catalog: Catalog, images: Mapping[str, str] | None = None
) -> LocalCluster:
    """The cluster, one task definition per catalog family (awslogs to /ecs/<family>, as the
    application's own task definitions would have; the image from `images` by family, else
    `default_image`), their log groups, and the default VPC's subnets and security group."""
    images = images or {}
    ecs, logs, ec2 = aws.ecs(), aws.logs(), aws.ec2()
    cluster = ecs.create_cluster(clusterName=name, capacityProviders=CAPACITY_PROVIDERS)["cluster"]
    role_arn = f"arn:aws:iam::{ACCOUNT_ID}:role/{name}-task"
    registered: dict[str, str] = {}
    for spec in catalog.batches.values():
        family = spec.task_definition.split(":", 1)[0]
        if family in registered:
            continue
        group = log_group_of(family)
        logs.create_log_group(logGroupName=group)
        definition = ecs.register_task_definition(
            family=family,
            networkMode="awsvpc",
            requiresCompatibilities=["FARGATE", "EC2"],
            cpu=str(spec.cpu),
            memory=str(spec.memory),
            taskRoleArn=role_arn,
            executionRoleArn=role_arn,
            containerDefinitions=[
                {
                    "name": spec.container,
                    "image": images.get(family) or default_image(family, aws.region),
                    # moto needs a container-level memory (field notes); Fargate ignores it.
                    "memory": spec.memory,
                    "essential": True,
                    "command": list(spec.command),
                    "logConfiguration": {
                        "logDriver": "awslogs",
                        "options": {
                            "awslogs-group": group,
                            "awslogs-region": aws.region,
                            "awslogs-stream-prefix": LOG_STREAM_PREFIX,
                        },
                    },
                }
            ],
        )
        registered[family] = definition["taskDefinition"]["taskDefinitionArn"]
    subnets = tuple(subnet["SubnetId"] for subnet in ec2.describe_subnets()["Subnets"])[:2]
    groups = tuple(group["GroupId"] for group in ec2.describe_security_groups()["SecurityGroups"])[:1]
    return LocalCluster(
        arn=cluster["clusterArn"],
        name=cluster["clusterName"],
        subnets=subnets,
        security_groups=groups,
        task_definition_arns=registered,
        task_role_arn=role_arn,
        pool_images={
            image_parameter(pool.name): images.get(pool.family) or default_image(pool.family, aws.region)
            for pool in catalog.pools.values()
        },
    )
