"""`batchgate pools`: each warm pool of the catalog, its tasks, slots, jobs, images and work queue."""

from __future__ import annotations

import click

from batchgate.adapters.pool_table import PoolTable
from batchgate.ops.cli.context import app
from batchgate.ops.cli.exits import ConfigError
from batchgate.ops.cli.options import CONTEXT_SETTINGS, json_option
from batchgate.ops.cli.render.pools import pools_document, render_pools
from batchgate.ops.cli.render.text import print_json
from batchgate.ops.cli.target import target_options
from batchgate.ops.pool_status import QueueBacklogs, pool_view
from batchgate.services.settings import parse_pool_queue_urls


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option("--pool", "pool_name", help="Only this pool.")
@click.option(
    "--catalog",
    "catalog_path",
    type=click.Path(dir_okay=False),
    help="Catalog declaring the pools (default: $BATCHGATE_CATALOG or the packaged one).",
)
@json_option
@target_options(hidden=True)
@click.pass_context
def pools(ctx: click.Context, *, pool_name: str | None, catalog_path: str | None, as_json: bool) -> None:
    """Each warm pool: its tasks (AZ, heartbeat age, stopping), slots busy and free, the jobs in its
    slots, the image each task runs and which batches it serves, and its work queue's backlog.

    A pool without a heartbeat is "closed (no task)"; one whose heartbeats are all older than 15 s has
    "stale heartbeats". Reads the pool table (one Query per pool), the work queues' attributes, and
    CloudWatch for the age of each queue's oldest message ("-" without a recent datapoint).
    """
    from batchgate.domain.catalog import CatalogError, load_catalog

    state = app(ctx)
    try:
        catalog = load_catalog(catalog_path)
    except CatalogError as error:
        raise ConfigError(str(error)) from error
    if pool_name is not None and pool_name not in catalog.pools:
        known = ", ".join(sorted(catalog.pools)) or "none"
        raise click.BadParameter(
            f"the catalog has no pool {pool_name!r} (its pools: {known})", ctx=ctx, param_hint="--pool"
        )
    names = [pool_name] if pool_name is not None else sorted(catalog.pools)
    now = state.clock()
    views = []
    if names:
        session = state.session
        table = PoolTable(session.resource("pool_table_name"), session.client("dynamodb"))
        try:
            queue_urls = parse_pool_queue_urls(session.optional_resource("pool_queue_urls") or "")
        except RuntimeError as error:
            raise ConfigError(str(error)) from error
        backlogs = QueueBacklogs(session.client("sqs"), session.client("cloudwatch"), state.clock)
        for name in names:
            url = queue_urls.get(name)
            views.append(
                pool_view(
                    catalog.pools[name],
                    (spec.name for spec in catalog.batches_of(name)),
                    table.tasks(name),
                    backlogs.backlog(url) if url else None,
                    now,
                )
            )
    if as_json:
        print_json(pools_document(views, now))
        return
    render_pools(state.console, views)
