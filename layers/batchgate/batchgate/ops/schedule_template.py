"""The schedules' part of template.yaml, generated from the catalog's `schedules` (docs/schedules.md).

Schedules are declared once, in the catalog, next to their batch. Each becomes an
`AWS::Scheduler::Schedule` in the stack's schedule group, rendered here and written into template.yaml
between marker comments (`# >>> generated from the catalog's schedules: <section>` ... `# <<< ...`), the
same mechanism as the warm pools' (batchgate.ops.pool_template): the resources stay reviewable in the
diff and checked by `sam validate --lint`, and tests/test_template.py fails when the file and the
catalog differ.

    python -m batchgate.ops.schedule_template [--catalog FILE] [--template FILE] [--write]

Without --write it prints the sections that differ and exits 1 when the template is out of date.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence

from batchgate.domain.catalog import Catalog
from batchgate.domain.schedule_delivery import DELIVERY_RETRY_ATTEMPTS, DELIVERY_RETRY_SECONDS
from batchgate.domain.schedules import ScheduleSpec
from batchgate.ops.pool_template import (
    Section,
    generate,
    in_logical_id_order,
    logical_name,
)
from batchgate.ops.pool_template import rewrite as rewrite_sections
from batchgate.ops.pool_template import stale_sections as stale_generated_sections

WRITE_COMMAND = "python -m batchgate.ops.schedule_template --write"
BEGIN = "# >>> generated from the catalog's schedules: {section} ({command})"
END = "# <<< generated from the catalog's schedules: {section}"
MARKERS = (BEGIN, END, WRITE_COMMAND)


def schedule_logical_id(name: str) -> str:
    """ "payroll-month-close" -> "SchedulePayrollMonthClose"."""
    return f"Schedule{logical_name(name)}"


def _schedules(catalog: Catalog) -> list[ScheduleSpec]:
    return in_logical_id_order(catalog.schedules, schedule_logical_id, "schedules")


def render_resources(catalog: Catalog) -> str:
    return "".join(_schedule_resource(schedule) for schedule in _schedules(catalog))


def _schedule_resource(schedule: ScheduleSpec) -> str:
    message = json.dumps(schedule.message(), separators=(",", ":"))
    description = schedule.description or f"batch {schedule.batch}"
    tolerance = (
        f", must start within {schedule.start_tolerance_seconds} s"
        if schedule.start_tolerance_seconds is not None
        else ""
    )
    return f"""\
  # ----- schedule {schedule.name}: batch {schedule.batch}, {schedule.expression.text} \
{schedule.timezone}{tolerance} -----
  {schedule_logical_id(schedule.name)}:
    Type: AWS::Scheduler::Schedule
    Properties:
      Name: {schedule.name}
      GroupName: !Ref ScheduleGroup
      Description: {json.dumps(description)}
      ScheduleExpression: "{schedule.expression.deployed}"
      ScheduleExpressionTimezone: {schedule.timezone}
      # On time: no flexible window.
      FlexibleTimeWindow:
        Mode: "OFF"
      State: ENABLED
      Target:
        Arn: !GetAtt JobsQueue.Arn
        RoleArn: !GetAtt SchedulerRole.Arn
        # The slot's submit message; Scheduler fills in <aws.scheduler.scheduled-time>, so the
        # idempotency key makes one slot one job however often it is delivered.
        Input: {json.dumps(message)}
        RetryPolicy:
          MaximumEventAgeInSeconds: {DELIVERY_RETRY_SECONDS}
          MaximumRetryAttempts: {DELIVERY_RETRY_ATTEMPTS}
        DeadLetterConfig:
          Arn: !GetAtt ScheduleDeadLetterQueue.Arn

"""


SECTIONS: tuple[Section, ...] = (Section("resources", render_resources),)


def rewrite(template_text: str, catalog: Catalog, sections: Sequence[Section] = SECTIONS) -> str:
    """template.yaml's text with the schedules' marked sections rendered from the catalog."""
    return rewrite_sections(template_text, catalog, sections, markers=MARKERS)


def stale_sections(template_text: str, catalog: Catalog) -> list[str]:
    return stale_generated_sections(template_text, catalog, SECTIONS, markers=MARKERS)


def main(argv: Sequence[str] | None = None, out: Callable[[str], None] = print) -> int:
    return generate(
        argv,
        out,
        prog="python -m batchgate.ops.schedule_template",
        subject="schedules",
        sections=SECTIONS,
        markers=MARKERS,
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
