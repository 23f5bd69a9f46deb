"""A real asyncua OPC-UA server for the tests and benchmarks, run in its own process
(``python -m framework.testing.opcua_server --port P --dir D``) by
:class:`framework.testing.opcua.OpcUaServer`.

Its address space, in the namespace ``urn:connector-fleet:test`` (index 2), string
node ids:

- writable variables ``Temperature`` (Double), ``Pressure`` (Double), ``Label``
  (String), ``Running`` (Boolean), ``Level`` (Int16), ``Setpoint`` (Float);
- ``ReadOnly`` (Double, not writable) and ``Stuck`` (Double: a write is accepted and
  undone before the Write response is sent: a device that acknowledges but does not
  take the value);
- ``Tick.0`` .. ``Tick.N-1`` (Int64): with ``--tick-ms``, all set to the next count
  every tick, with a source timestamp. The count and its timestamp are saved in
  ``D/tick.json``, so a restarted server still has the value it had (and its time);
- object ``Pump`` with method ``Pump.Start(speed: Double) -> Boolean``, which counts
  its calls in ``Pump.Starts`` (Int32) and sets ``Pump.Speed`` (Double).

``--user NAME`` with the password in ``OPCUA_TEST_PASSWORD`` refuses anonymous
sessions. ``--secure`` offers Basic256Sha256 (Sign and SignAndEncrypt) only, with
``D/server.der`` / ``D/server.key.pem`` made here, and trusts the client
certificate ``D/client.der`` (also made here, with its key ``D/client.key.pem``).
It prints ``READY`` once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asyncua import Server, ua
from asyncua.common.callback import CallbackType
from asyncua.crypto import security_policies
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from cryptography.x509.oid import ExtendedKeyUsageOID

NAMESPACE = "urn:connector-fleet:test"
CLIENT_URI = "urn:connector-fleet:client"
_VARIABLES: list[tuple[str, Any, ua.VariantType, bool]] = [
    ("Temperature", 20.0, ua.VariantType.Double, True),
    ("Pressure", 1.0, ua.VariantType.Double, True),
    ("Label", "idle", ua.VariantType.String, True),
    ("Running", False, ua.VariantType.Boolean, True),
    ("Level", 0, ua.VariantType.Int16, True),
    ("Setpoint", 0.0, ua.VariantType.Float, True),
    ("ReadOnly", 1.0, ua.VariantType.Double, False),
    ("Stuck", 0.0, ua.VariantType.Double, True),
]


class _Users:
    """asyncua's user manager (duck-typed): one user, with the given password."""

    def __init__(self, name: str, password: str) -> None:
        self._name, self._password = name, password

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> User | None:
        if username == self._name and password == self._password:
            return User(role=UserRole.Admin, name=username)
        return None


def _stamped(value: Any, variant: ua.VariantType, when: datetime) -> ua.DataValue:
    return ua.DataValue(ua.Variant(value, variant), SourceTimestamp=when, ServerTimestamp=when)


async def _certificates(directory: Path) -> None:
    for name, uri in (("server", "urn:connector-fleet:test-server"), ("client", CLIENT_URI)):
        usage = (ExtendedKeyUsageOID.SERVER_AUTH if name == "server"
                 else ExtendedKeyUsageOID.CLIENT_AUTH)
        await setup_self_signed_certificate(
            directory / f"{name}.key.pem", directory / f"{name}.der", uri, "localhost",
            [usage], {"commonName": f"connector-fleet-{name}"})


async def _build(args: argparse.Namespace) -> tuple[Server, dict[str, Any]]:
    server = Server(user_manager=_Users(args.user, os.environ.get("OPCUA_TEST_PASSWORD", ""))
                    if args.user else None)
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{args.port}/fleet")
    server.set_server_name("connector-fleet test server")
    directory = Path(args.dir)
    if args.secure:
        await _certificates(directory)
        server.set_security_policy(
            [ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
             ua.SecurityPolicyType.Basic256Sha256_Sign])
        await server.load_certificate(str(directory / "server.der"))
        await server.load_private_key(str(directory / "server.key.pem"))
        store = TrustStore([directory / "trusted"], [])
        (directory / "trusted").mkdir(exist_ok=True)
        (directory / "trusted" / "client.der").write_bytes((directory / "client.der").read_bytes())
        await store.load()
        validator = CertificateValidator(
            options=CertificateValidatorOptions.TRUSTED_VALIDATION
            | CertificateValidatorOptions.PEER_CLIENT, trust_store=store)
        server.set_certificate_validator(validator)
    if args.user:
        server.set_security_IDs(["Username"])
    else:
        server.set_security_IDs(["Anonymous", "Username"])
    ns = await server.register_namespace(NAMESPACE)
    plant = await server.nodes.objects.add_object(ua.NodeId("Plant", ns), "Plant")
    nodes: dict[str, Any] = {}
    for name, value, variant, writable in _VARIABLES:
        node = await plant.add_variable(ua.NodeId(name, ns), name, ua.Variant(value, variant))
        if writable:
            await node.set_writable()
        nodes[name] = node
    for index in range(args.tick_nodes):
        name = f"Tick.{index}"
        nodes[name] = await plant.add_variable(ua.NodeId(name, ns), name,
                                               ua.Variant(0, ua.VariantType.Int64))
    await _add_pump(server, ns, nodes)
    return server, nodes


async def _add_pump(server: Server, ns: int, nodes: dict[str, Any]) -> None:
    pump = await server.nodes.objects.add_object(ua.NodeId("Pump", ns), "Pump")
    starts = await pump.add_variable(ua.NodeId("Pump.Starts", ns), "Starts",
                                     ua.Variant(0, ua.VariantType.Int32))
    speed = await pump.add_variable(ua.NodeId("Pump.Speed", ns), "Speed",
                                    ua.Variant(0.0, ua.VariantType.Double))
    nodes["Pump.Starts"], nodes["Pump.Speed"] = starts, speed

    async def start(_parent: Any, requested: ua.Variant) -> Any:
        # A plain method (not asyncua's uamethod): it may answer a status code.
        if requested.Value < 0:
            return ua.StatusCode(ua.StatusCodes.BadOutOfRange)
        await starts.write_value(ua.Variant(await starts.read_value() + 1, ua.VariantType.Int32))
        await speed.write_value(ua.Variant(float(requested.Value), ua.VariantType.Double))
        return [ua.Variant(True, ua.VariantType.Boolean)]

    await pump.add_method(ua.NodeId("Pump.Start", ns), "Start", start,
                          [ua.VariantType.Double], [ua.VariantType.Boolean])


def _load_tick(directory: Path) -> tuple[int, datetime]:
    path = directory / "tick.json"
    if not path.exists():
        return 0, datetime.now(UTC)
    saved = json.loads(path.read_text())
    return int(saved["count"]), datetime.fromisoformat(saved["at"])


async def _tick(directory: Path, nodes: list[Any], every_s: float, count: int) -> None:
    path = directory / "tick.json"
    while True:
        await asyncio.sleep(every_s)
        count += 1
        now = datetime.now(UTC)
        for node in nodes:
            await node.write_value(_stamped(count, ua.VariantType.Int64, now))
        # Atomically: a server killed mid-write still has its last count.
        path.with_suffix(".tmp").write_text(json.dumps({"count": count, "at": now.isoformat()}))
        os.replace(path.with_suffix(".tmp"), path)


def _undo_stuck(server: Server, node: Any) -> Any:
    """A PostWrite callback: a write to ``node`` is accepted, then undone before the
    Write response leaves (asyncua awaits PostWrite callbacks first), so any read-back
    sees the old value whatever the timing."""

    async def undo(event: Any, _dispatcher: Any) -> None:
        written = event.request_params.NodesToWrite
        if any(item.NodeId == node.nodeid for item in written):
            # Straight into the address space: a session write would call back here.
            await server.write_attribute_value(
                node.nodeid, _stamped(0.0, ua.VariantType.Double, datetime.now(UTC)))

    return undo


async def serve(args: argparse.Namespace) -> None:
    server, nodes = await _build(args)
    directory = Path(args.dir)
    count, at = _load_tick(directory)
    ticks = [nodes[f"Tick.{index}"] for index in range(args.tick_nodes)]
    for node in ticks:  # what the server still had before it stopped, with its time
        await node.write_value(_stamped(count, ua.VariantType.Int64, at))
    async with server:
        undo = _undo_stuck(server, nodes["Stuck"])
        server.subscribe_server_callback(CallbackType.PostWrite, undo)
        tasks: list[asyncio.Task[None]] = []
        if args.tick_ms and ticks:
            tasks.append(asyncio.create_task(_tick(directory, ticks, args.tick_ms / 1000, count)))
        with socket.create_connection(("127.0.0.1", args.port), timeout=2):
            pass
        sys.stdout.write("READY\n")
        sys.stdout.flush()
        await asyncio.Event().wait()  # until SIGTERM / SIGKILL


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--user")
    parser.add_argument("--secure", action="store_true")
    parser.add_argument("--tick-ms", type=float, default=0)
    parser.add_argument("--tick-nodes", type=int, default=1)
    args = parser.parse_args()
    _ = security_policies  # imported so a missing crypto backend fails here, loudly
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))


if __name__ == "__main__":
    main()
