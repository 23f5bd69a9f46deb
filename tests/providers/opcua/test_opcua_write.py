"""``opcua_write`` against a real asyncua server: each variant type written and read
back, every parameter error, refusals named with their status, endpoints only from
the configured list, method calls."""

from __future__ import annotations

from typing import Any

import pytest
from asyncua import Client, ua
from redis.asyncio import Redis

from framework.consuming.capabilities.registry import CapabilityRegistry
from framework.consuming.capabilities.spec import CallContext
from framework.core import ConfigError, HostPolicy, RefusedTargetError
from framework.core.clock import SystemClock
from framework.core.logs import get_logger
from framework.testing import free_port
from framework.testing.opcua import OpcUaServer, node_id
from providers.builtin import register_builtin_capabilities
from providers.opcua import EndpointConfig, endpoints_from_env, opcua_write_spec

pytestmark = pytest.mark.slow  # a server process per module (~2 s)


def context(redis: Redis, hosts: HostPolicy | None = None) -> CallContext:
    return CallContext(idempotency_key="test:1-0:rule:step", event={}, redis=redis,
                       clock=SystemClock(), logger=get_logger(test="opcua-write"), hosts=hosts)


def spec_for(server: OpcUaServer | str) -> Any:
    endpoint = server if isinstance(server, str) else server.endpoint
    return opcua_write_spec({"plc": EndpointConfig(endpoint=endpoint)})


async def read(server: OpcUaServer, name: str) -> Any:
    async with Client(server.endpoint, timeout=10) as client:
        return await client.get_node(node_id(name)).read_value()


@pytest.mark.parametrize(("name", "value", "variant"), [
    ("Temperature", 21.5, "Double"),
    ("Setpoint", 21.1, "Float"),  # reads back as 21.100000381...: compared by its bits
    ("Level", -7, "Int16"),
    ("Label", "running", "String"),
    ("Running", True, "Boolean"),
])
async def test_each_variant_type_is_written_and_read_back(
    redis: Redis, opcua_server: OpcUaServer, name: str, value: Any, variant: str,
) -> None:
    spec = spec_for(opcua_server)
    call = {"endpoint": "plc", "nodeId": node_id(name), "value": value, "variantType": variant}

    result = await spec.handler(call, context(redis))
    state = await spec.read_state(call, context(redis))

    assert result == {"endpoint": "plc", "nodeId": node_id(name), "operation": "write",
                      "value": value, "variantType": variant}
    assert await read(opcua_server, name) == pytest.approx(value)
    assert (state["reachable"], state["matches"], state["variantType"],
            state["statusCode"]) == (True, True, variant, "Good")
    assert state["value"] == pytest.approx(value)


async def test_read_back_tells_a_different_value_and_an_unreachable_server(
    redis: Redis, opcua_server: OpcUaServer,
) -> None:
    spec = spec_for(opcua_server)
    call = {"endpoint": "plc", "nodeId": node_id("Pressure"), "value": 9.0,
            "variantType": "Double"}
    state = await spec.read_state(call, context(redis))
    assert (state["reachable"], state["value"], state["matches"]) == (True, 1.0, False)
    gone = spec_for(f"opc.tcp://127.0.0.1:{free_port()}")
    state = await gone.read_state(call, context(redis))
    assert (state["reachable"], state["matches"]) == (False, False)


@pytest.mark.parametrize(("change", "message"), [
    ({"endpoint": ""}, "endpoint: String should have at least 1 character"),
    ({"nodeId": "Temperature"}, "node id 'Temperature' is not an OPC-UA node id"),
    ({"variantType": "Int8"}, "variantType: Input should be 'Boolean'"),
    ({"variantType": None}, "variantType is required to write a value"),
    ({"value": None}, "value is required to write"),
    ({"value": "hot"}, "a Double must be a number, not 'hot'"),
    ({"variantType": "Int16", "value": 70000}, "70000 does not fit Int16 (-32768..32767)"),
    ({"variantType": "UInt32", "value": -1}, "-1 does not fit UInt32"),
    ({"variantType": "Int32", "value": 1.5}, "1.5 is not a whole Int32"),
    ({"variantType": "Float", "value": 1e39}, "does not fit Float"),
    ({"variantType": "Boolean", "value": 1}, "a Boolean must be true or false"),
    ({"variantType": "String", "value": 5}, "a String must be a string"),
    ({"variantType": "DateTime", "value": "yesterday"}, "a DateTime must be ISO-8601"),
    ({"variantType": "ByteString", "value": "%%%"}, "a ByteString must be base64"),
    ({"arguments": [{"value": 1, "variantType": "Int32"}]}, "arguments go with method"),
    ({"method": "ns=2;s=Pump.Start"}, "a method call takes arguments, not value or variantType"),
    ({"timeoutMs": 0}, "timeoutMs: Input should be greater than 0"),
    ({"host": "10.0.0.1"}, "host: Extra inputs are not permitted"),
])
async def test_parameter_errors_name_the_parameter(
    redis: Redis, change: dict[str, Any], message: str,
) -> None:
    call = {"endpoint": "plc", "nodeId": node_id("Temperature"), "value": 1.0,
            "variantType": "Double", **change}
    with pytest.raises(ValueError, match="opcua_write: ") as raised:
        await spec_for("opc.tcp://127.0.0.1:1").handler(call, context(redis))
    assert message in str(raised.value)


async def test_a_method_argument_that_does_not_fit_names_it(redis: Redis) -> None:
    call = {"endpoint": "plc", "nodeId": node_id("Pump"), "method": node_id("Pump.Start"),
            "arguments": [{"value": "fast", "variantType": "Double"}]}
    with pytest.raises(ValueError, match=r"opcua_write: arguments.0: .*a Double must be a "
                                         r"number, not 'fast'"):
        await spec_for("opc.tcp://127.0.0.1:1").handler(call, context(redis))


@pytest.mark.parametrize(("name", "variant", "value", "status"), [
    ("ReadOnly", "Double", 2.0, "BadUserAccessDenied|BadNotWritable"),
    ("Level", "Double", 2.0, "BadTypeMismatch"),
    # asyncua's server answers an unknown node's write with BadUserAccessDenied.
    ("NoSuchNode", "Double", 2.0, "BadNodeIdUnknown|BadUserAccessDenied"),
])
async def test_a_refused_write_is_a_permanent_error_naming_node_and_status(
    redis: Redis, opcua_server: OpcUaServer, name: str, variant: str, value: Any, status: str,
) -> None:
    call = {"endpoint": "plc", "nodeId": node_id(name), "value": value, "variantType": variant}
    with pytest.raises(Exception, match=rf"opcua_write: write of {variant} to node "
                                        rf"{node_id(name)} on plc: ({status})") as raised:
        await spec_for(opcua_server).handler(call, context(redis))
    assert getattr(raised.value, "retryable", True) is False


async def test_only_configured_endpoints_and_the_steps_allow_list_are_reached(
    redis: Redis, opcua_server: OpcUaServer,
) -> None:
    call = {"endpoint": "elsewhere", "nodeId": node_id("Temperature"), "value": 1.0,
            "variantType": "Double"}
    with pytest.raises(RefusedTargetError, match=r"endpoint 'elsewhere' is not configured "
                                                 r"\(known: plc\)"):
        await spec_for(opcua_server).handler(call, context(redis))
    call["endpoint"] = "plc"
    with pytest.raises(RefusedTargetError, match="not in the allow-list"):
        await spec_for(opcua_server).handler(call, context(redis, HostPolicy.of(["10.0.0.20"])))
    await spec_for(opcua_server).handler(call, context(redis, HostPolicy.of(["127.0.0.1"])))


async def test_a_method_is_called_with_typed_arguments_and_its_outputs_returned(
    redis: Redis, opcua_server: OpcUaServer,
) -> None:
    spec = spec_for(opcua_server)
    starts = await read(opcua_server, "Pump.Starts")
    call = {"endpoint": "plc", "nodeId": node_id("Pump"), "method": node_id("Pump.Start"),
            "arguments": [{"value": 1200, "variantType": "Double"}]}
    result = await spec.handler(call, context(redis))
    assert result == {"endpoint": "plc", "nodeId": node_id("Pump"), "operation": "call",
                      "method": node_id("Pump.Start"), "outputs": [True]}
    assert await read(opcua_server, "Pump.Starts") == starts + 1
    assert await read(opcua_server, "Pump.Speed") == 1200.0
    state = await spec.read_state(call, context(redis))
    assert (state["operation"], state["reachable"], state["matches"]) == ("call", True, None)
    refused = {**call, "arguments": [{"value": -1, "variantType": "Double"}]}
    with pytest.raises(Exception, match=r"call of method ns=2;s=Pump.Start on node ns=2;s=Pump "
                                        r"on plc: BadOutOfRange"):
        await spec.handler(refused, context(redis))


def test_endpoints_are_read_from_the_environment_with_errors_naming_them(
    tmp_path: Any,
) -> None:
    endpoints = endpoints_from_env({"OPCUA_ENDPOINTS": '{"plc": {"endpoint": '
                                                       '"opc.tcp://10.0.0.5:4840"}}'})
    assert endpoints["plc"].address() == ("10.0.0.5", 4840)
    assert endpoints_from_env({}) == {}
    path = tmp_path / "endpoints.json"
    path.write_text('{"a": {"endpoint": "opc.tcp://h"}}')
    assert list(endpoints_from_env({"OPCUA_ENDPOINTS_FILE": str(path)})) == ["a"]
    with pytest.raises(ConfigError, match="OPCUA_ENDPOINTS: not JSON"):
        endpoints_from_env({"OPCUA_ENDPOINTS": "{"})
    with pytest.raises(ConfigError, match=r"OPCUA_ENDPOINTS: endpoint b: .*the scheme must be "
                                          r"opc.tcp://"):
        endpoints_from_env({"OPCUA_ENDPOINTS": '{"b": {"endpoint": "http://h"}}'})
    with pytest.raises(ConfigError, match="OPCUA_ENDPOINTS_FILE /nonexistent: No such file"):
        endpoints_from_env({"OPCUA_ENDPOINTS_FILE": "/nonexistent"})
    _ = ua  # the variant types named in these tests are asyncua's


async def test_the_built_in_capability_reaches_the_endpoints_of_its_environment(
    redis: Redis, opcua_server: OpcUaServer,
) -> None:
    registry = CapabilityRegistry()
    env = {"OPCUA_ENDPOINTS": f'{{"plc": {{"endpoint": "{opcua_server.endpoint}"}}}}'}
    actions = register_builtin_capabilities(registry, env=env)
    try:
        spec = registry.resolve("opcua_write", "^1")
        call = {"endpoint": "plc", "nodeId": node_id("Temperature"), "value": 23.0,
                "variantType": "Double"}
        await spec.handler(call, context(redis))
        with pytest.raises(RefusedTargetError, match=r"\(known: plc\)"):
            await spec.handler({**call, "endpoint": "other"}, context(redis))
    finally:
        await actions.aclose()
    assert await read(opcua_server, "Temperature") == 23.0
