"""``/api/v1/ota/rollouts``: OTA rollouts through the control API, the same as
``connector-fleet ota``: list and show (viewer), start and resume (operator,
audited). A started rollout is driven by this process in the background
(worker.ota, through the signed catalog); when this process stops, the rollout
stays where it was in Redis and ``connector-fleet ota resume ID`` (or the resume
route) goes on from there."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from framework.consuming import describe_validation_error
from framework.core import ConnectorFleetError, get_logger, read_settings
from providers.devices.ota import (
    RolloutError,
    RolloutPlan,
    RolloutStore,
    list_rollouts,
    rollout_status,
    start_rollout,
)
from worker.ops.api_support import ApiDeps, api_error, audited, json_body, json_response, requires
from worker.ops.tokens import Role

MAX_LISTED = 100


def ota_routes(deps: ApiDeps, stopping: asyncio.Event) -> web.RouteTableDef:
    routes = web.RouteTableDef()
    driving: set[asyncio.Task[None]] = set()

    def drive(rollout_id: str) -> None:
        task = asyncio.create_task(_drive(deps, rollout_id, stopping))
        driving.add(task)
        task.add_done_callback(driving.discard)

    @routes.get("/api/v1/ota/rollouts")
    @requires(Role.VIEWER)
    async def list_all(_: web.Request) -> web.Response:
        rollouts = []
        for rollout_id in await list_rollouts(deps.redis, MAX_LISTED):
            try:
                rollouts.append(await rollout_status(deps.redis, rollout_id))
            except RolloutError:
                continue  # listed, its state since removed: nothing to show
        return json_response({"rollouts": rollouts})

    @routes.get("/api/v1/ota/rollouts/{id}")
    @requires(Role.VIEWER)
    async def show(request: web.Request) -> web.Response:
        return json_response(await _status(deps, request.match_info["id"]))

    @routes.post("/api/v1/ota/rollouts")
    @requires(Role.OPERATOR)
    async def start(request: web.Request) -> web.Response:
        body = await json_body(request)
        rollout_id = body.pop("id", None)
        try:
            plan = RolloutPlan.model_validate(body)
        except ValidationError as exc:
            raise api_error(400, f"request body: {describe_validation_error(exc)}") from None
        try:
            rollout_id, count = await start_rollout(
                deps.redis, plan, now_s=deps.clock.time(),
                rollout_id=rollout_id if isinstance(rollout_id, str) else None)
        except RolloutError as exc:
            raise api_error(409 if "exists" in str(exc) else 400, str(exc)) from None
        await audited(deps, request, "ota_start", rollout_id,
                      {"group": plan.group, "version": plan.version, "devices": count})
        drive(rollout_id)
        return json_response(await rollout_status(deps.redis, rollout_id), status=201)

    @routes.post("/api/v1/ota/rollouts/{id}/resume")
    @requires(Role.OPERATOR)
    async def resume(request: web.Request) -> web.Response:
        status = await _status(deps, request.match_info["id"])
        await audited(deps, request, "ota_resume", status["id"], {"stage": status["stage"]})
        drive(status["id"])
        return json_response(status, status=202)

    return routes


async def _status(deps: ApiDeps, rollout_id: str) -> dict[str, Any]:
    if await RolloutStore(deps.redis, rollout_id).plan() is None:
        raise api_error(404, f"rollout {rollout_id[:80]}: no such rollout")
    return await rollout_status(deps.redis, rollout_id)


async def _drive(deps: ApiDeps, rollout_id: str, stopping: asyncio.Event) -> None:
    """Drive until the end or until this server stops (the rollout then waits in Redis)."""
    from worker.ota import drive_rollout  # the capabilities and the catalog: only here

    log = get_logger(component="ota_api", rollout=rollout_id)
    driving = asyncio.create_task(drive_rollout(deps.redis, rollout_id, read_settings(),
                                                handle_signals=False))
    stopped = asyncio.create_task(stopping.wait())
    try:
        await asyncio.wait({driving, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (driving, stopped):
            task.cancel()
        results = await asyncio.gather(driving, stopped, return_exceptions=True)
    outcome = results[0]
    if isinstance(outcome, ConnectorFleetError):
        log.error("ota_drive_failed", error=str(outcome))
    elif isinstance(outcome, BaseException) and not isinstance(outcome, asyncio.CancelledError):
        log.error("ota_drive_failed", error=f"{type(outcome).__name__}: {outcome}")
    else:
        log.info("ota_drive_ended", stage=outcome)
