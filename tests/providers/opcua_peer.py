"""A real OPC-UA server on loopback (asyncua's own), on a free port, holding one
pump (Run, Speed as a Float, the interlock readings Level and InletOpen) and one
irrigation valve, each a writable variable of namespace ``urn:plant-test``."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from asyncua import ua
from asyncua.server.server import Server

from framework.testing import free_port

VARIABLES: dict[str, tuple[Any, ua.VariantType]] = {
    "P01.Run": (False, ua.VariantType.Boolean),
    "P01.Speed": (0.0, ua.VariantType.Float),
    "P01.Level": (0.8, ua.VariantType.Double),
    "P01.InletOpen": (True, ua.VariantType.Boolean),
    "Z01.Valve": (False, ua.VariantType.Boolean),
}


class OpcuaPeer:
    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"opc.tcp://127.0.0.1:{self.port}/plant/"
        self.namespace = 0
        self._server = Server()
        self._nodes: dict[str, Any] = {}

    def node_id(self, name: str) -> str:
        return f"ns={self.namespace};s={name}"

    async def value(self, name: str) -> Any:
        return await self._nodes[name].read_value()

    async def set(self, name: str, value: Any) -> None:
        await self._nodes[name].write_value(ua.Variant(value, VARIABLES[name][1]))

    async def __aenter__(self) -> OpcuaPeer:
        await self._server.init()
        self._server.set_endpoint(self.endpoint)
        self._server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        self.namespace = await self._server.register_namespace("urn:plant-test")
        plant = await self._server.nodes.objects.add_object(self.namespace, "Plant")
        for name, (initial, variant) in VARIABLES.items():
            node = await plant.add_variable(ua.NodeId(name, self.namespace), name, initial,
                                            varianttype=variant)
            await node.set_writable()
            self._nodes[name] = node
        await self._server.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self._server.stop()
