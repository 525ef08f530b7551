"""The embedded local stack: the whole product on one machine, without an AWS account.

- `endpoint`: a moto server in a child process (real HTTP on 127.0.0.1) standing in for AWS.
- `resources` (with `intrinsics`): the stack's queues, table, log groups and rules, created from
  template.yaml itself (translated by the SAM translator); `cluster`: the ECS cluster, the catalog's
  task definitions and the network the template's parameters name.
- `hosts` / `functions` / `runtime`: each Lambda function of the template runs its real handler in its
  own process (an execution environment), fed by `poller` (the SQS event source mapping) or `events`
  (an EventBridge rule or schedule -> asynchronous invocation).
- `executor`: runs the tasks RunTask started as local processes, ships their output to CloudWatch Logs
  and publishes ECS task state change events (`task_state`); `moto_server` adds what ECS does and
  moto does not (RunTask idempotency per clientToken). `watchdog` stops tasks that run past their
  timeout while the template schedules no sweep.
- `stack`: ties it together; `demo` and `commands` are the `batchgate local` commands.

moto and the SAM translator are development dependencies (requirements.lock), not runtime ones: this
package is imported only by `batchgate local`, never by the Lambda functions.
"""
