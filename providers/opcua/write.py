"""``opcua_write``: write a node's value with its variant type, or call a method, on
one of the configured OPC-UA endpoints (parameters: :mod:`providers.opcua.write_params`).

The read function reads the node back::

    {"operation": "write", "reachable": true, "value": 21.5, "variantType": "Float",
     "statusCode": "Good", "matches": true}

``matches``: the node holds the value the call writes (a Float compared by its 32
bits): the postcondition of the signed definition; ``value`` is what a rollback with
``{"value": "previous"}`` writes back. An unreachable server reads as
``{"reachable": false, ...}`` so a precondition can refuse the step. A method call
has nothing to read back (``"operation": "call"``, ``matches`` null): its outputs are
its result, and it has no automatic undo (a rollback of it is refused, and audited).

Targets: the endpoint is looked up by name in the configured list, and the step's
``allowHosts`` (when it has one) must also name its host. While the call holds a
resource permit (``opcua:{endpoint}/{nodeId}``), its fencing token is checked
against the highest this node accepted (:class:`framework.trust.FencingGuard`), so a
holder whose permit expired cannot write behind the new holder.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from asyncua import ua

from framework.consuming import (
    CallContext,
    CallPolicy,
    CapabilitySpec,
    ResourcePolicy,
    is_retryable,
)
from framework.core import (
    PermanentSourceError,
    RefusedTargetError,
    StaleFencingTokenError,
    TransientSourceError,
    outside_deadline,
)
from framework.trust import FencingGuard
from providers.opcua.client import session
from providers.opcua.config import EndpointConfig
from providers.opcua.values import json_value, same_value, status_name
from providers.opcua.write_params import WriteParams, parse_params

OPCUA_WRITE_ID = "opcua_write"
OPCUA_WRITE_VERSION = "1.0.0"
OPCUA_WRITE_RESOURCE = ResourcePolicy("opcua:{endpoint}/{nodeId}")
# Statuses that say "not now" (the server is busy or restarting): worth a retry.
_BUSY = frozenset({
    ua.StatusCodes.BadTooManyOperations, ua.StatusCodes.BadServerHalted,
    ua.StatusCodes.BadResourceUnavailable, ua.StatusCodes.BadTimeout,
    ua.StatusCodes.BadCommunicationError, ua.StatusCodes.BadShutdown,
    ua.StatusCodes.BadServerTooBusy,
})
MAX_READ_BYTES = 1024 * 1024


class OpcUaWriter:
    """The capability over one list of endpoints (name -> settings)."""

    def __init__(self, endpoints: Mapping[str, EndpointConfig]) -> None:
        self._endpoints = dict(endpoints)

    def _endpoint(self, request: WriteParams, context: CallContext) -> EndpointConfig:
        settings = self._endpoints.get(request.endpoint)
        if settings is None:
            known = ", ".join(sorted(self._endpoints)) or "none: set OPCUA_ENDPOINTS"
            raise RefusedTargetError(f"opcua_write: endpoint {request.endpoint!r} is not "
                                     f"configured (known: {known})")
        if context.hosts is not None:
            reason = context.hosts.refuse_name(*settings.address())
            if reason is not None:
                raise RefusedTargetError(f"opcua_write: endpoint {request.endpoint}: {reason}")
        return settings

    async def write(self, params: Mapping[str, Any], context: CallContext) -> Any:
        request = parse_params(params)
        settings = self._endpoint(request, context)
        if context.fencing_token is not None:
            # Our Redis, not the server: a Redis stall is not the server's time.
            with outside_deadline():
                await FencingGuard(context.redis).accept(request.target, context.fencing_token)
        async with session(settings, timeout_s=request.timeout_ms / 1000) as client:
            node = client.get_node(request.node_id)
            try:
                if request.method is None:
                    await node.write_value(ua.DataValue(request.variant()))
                    outputs: Any = None
                else:
                    outputs = await node.call_method(
                        ua.NodeId.from_string(request.method),
                        *[argument.as_variant() for argument in request.arguments])
            except ua.UaStatusCodeError as exc:
                raise _refused(request, exc) from None
            except (TimeoutError, OSError, ConnectionError) as exc:
                raise TransientSourceError(f"opcua_write: {request.target}: "
                                           f"{type(exc).__name__}: {exc}") from None
        context.logger.info("opcua_written", target=request.target, operation=request.operation,
                            method=request.method, variant_type=request.variant_type,
                            fencing_token=context.fencing_token)
        result: dict[str, Any] = {"endpoint": request.endpoint, "nodeId": request.node_id,
                                  "operation": request.operation}
        if request.method is None:
            result.update(value=request.value, variantType=request.variant_type)
        else:
            result.update(method=request.method, outputs=_outputs(outputs))
        return result

    async def read_back(self, params: Mapping[str, Any],
                        context: CallContext) -> Mapping[str, Any]:
        request = parse_params(params)
        settings = self._endpoint(request, context)
        state: dict[str, Any] = {"operation": request.operation, "reachable": False,
                                 "value": None, "variantType": None, "statusCode": None,
                                 "matches": None if request.method else False}
        try:
            async with session(settings, timeout_s=request.timeout_ms / 1000) as client:
                if request.method is not None:
                    return {**state, "reachable": True}
                data = await client.get_node(request.node_id).read_data_value(
                    raise_on_bad_status=False)
        except (TransientSourceError, TimeoutError, OSError, ConnectionError) as exc:
            context.logger.warning("opcua_unreachable", target=request.target, error=str(exc))
            return state
        except ua.UaStatusCodeError as exc:
            raise _refused(request, exc) from None
        value = data.Value.Value if data.Value is not None else None
        return {**state, "reachable": True, "value": json_value(value, MAX_READ_BYTES),
                "variantType": data.Value.VariantType.name if data.Value is not None else None,
                "statusCode": status_name(data.StatusCode),
                "matches": data.StatusCode.is_good() and same_value(value, request.variant())}


def _outputs(outputs: Any) -> Any:
    values = outputs if isinstance(outputs, list) else [] if outputs is None else [outputs]
    return [json_value(value, MAX_READ_BYTES) for value in values]


def _refused(request: WriteParams, exc: ua.UaStatusCodeError) -> Exception:
    status = ua.StatusCode(exc.code)
    what = (f"write of {request.variant_type} to" if request.method is None
            else f"call of method {request.method} on")
    message = f"opcua_write: {what} node {request.node_id} on {request.endpoint}: {status.name}"
    if exc.code in _BUSY:
        return TransientSourceError(message)
    # The server is up and says no (not writable, wrong type, unknown node, denied):
    # the same call again cannot help.
    return PermanentSourceError(message)


def _retryable(exc: BaseException) -> bool:
    # A stale token stays stale: the node belongs to a newer permit holder now.
    return is_retryable(exc) and not isinstance(exc, StaleFencingTokenError)


def opcua_write_spec(endpoints: Mapping[str, EndpointConfig] | None = None, *,
                     policy: CallPolicy | None = None) -> CapabilitySpec:
    """The ``opcua_write`` capability over the configured endpoints (by name)."""
    writer = OpcUaWriter(endpoints or {})
    return CapabilitySpec(
        id=OPCUA_WRITE_ID,
        version=OPCUA_WRITE_VERSION,
        handler=writer.write,
        description="Write an OPC-UA node's value with its variant type (read back), "
                    "or call a method",
        read_state=writer.read_back,
        policy=policy or CallPolicy(timeout_s=10.0, max_retries=2, retryable=_retryable),
        breaker_scope=lambda params: str(params.get("endpoint") or "") or None,
        resource=OPCUA_WRITE_RESOURCE,
    )
