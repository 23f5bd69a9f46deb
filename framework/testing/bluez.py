"""A fake BlueZ on a private D-Bus, for the ``ble-scanner`` tests: a ``dbus-daemon`` of
its own (standing in for the system bus) and python-dbusmock's ``bluez5`` template
(standing in for ``bluetoothd``), each a process whose pid this fixture holds.

It fakes BlueZ's D-Bus API, not a radio: adapters, devices and their advertised
data, GATT services and characteristics are objects the test puts on the bus, and
bleak's real BlueZ backend talks to them over a real D-Bus connection. Point
``DBUS_SYSTEM_BUS_ADDRESS`` at :attr:`BluezMock.address` (see :attr:`BluezMock.env`)
before bleak first touches D-Bus.

Control it with :meth:`BluezMock.control` (async, over D-Bus with dbus-fast)::

    with BluezMock() as bluez:
        async with bluez.control() as fake:
            await fake.add_adapter("hci0")
            await fake.add_device("hci0", "AA:BB:CC:DD:EE:01", rssi=-60)
            await fake.advertise("hci0", "AA:BB:CC:DD:EE:01", rssi=-58)  # seen by a scan

bleak reports a device only when its properties change during a scan:
:meth:`BluezControl.advertise` changes them (one advertisement).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any

from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from framework.testing.processes import terminate

BLUEZ = "org.bluez"
MOCK = "org.freedesktop.DBus.Mock"
BLUEZ_MOCK = "org.bluez.Mock"
DEVICE = "org.bluez.Device1"
SERVICE = "org.bluez.GattService1"
CHARACTERISTIC = "org.bluez.GattCharacteristic1"
OBJECT_MANAGER = "org.freedesktop.DBus.ObjectManager"

# Connect as BlueZ does it once the link is up and the services are discovered
# (the template's Connect sets only Connected, and bleak waits for ServicesResolved).
_CONNECT = ("if self.props['org.bluez.Device1'].get('Connected'):\n"
            "    raise dbus.exceptions.DBusException('Already Connected',"
            " name='org.bluez.Error.AlreadyConnected')\n"
            "self.UpdateProperties('org.bluez.Device1',"
            " {'Connected': dbus.Boolean(True), 'ServicesResolved': dbus.Boolean(True)})")
_DISCONNECT = ("self.UpdateProperties('org.bluez.Device1',"
               " {'Connected': dbus.Boolean(False), 'ServicesResolved': dbus.Boolean(False)})")
_REFUSE = ("raise dbus.exceptions.DBusException('le-connection-abort-by-local',"
           " name='org.bluez.Error.Failed')")
_READ = "ret = self.props['org.bluez.GattCharacteristic1']['Value']"
_NOTIFYING = ("self.UpdateProperties('org.bluez.GattCharacteristic1',"
              " {{'Notifying': dbus.Boolean({on})}})")


class BluezMock:
    """``with BluezMock() as bluez``: a private bus and a fake BlueZ on it, stopped by
    pid on exit. :meth:`stop_bluez` / :meth:`start_bluez` stop and start the fake
    ``bluetoothd`` alone (its objects are gone after a restart)."""

    def __init__(self) -> None:
        daemon = shutil.which("dbus-daemon")
        if daemon is None:
            raise RuntimeError("dbus-daemon not found: install it (Debian: apt-get install "
                               "dbus-daemon)")
        if importlib.util.find_spec("dbusmock") is None:
            raise RuntimeError("python-dbusmock not found: pip install python-dbusmock "
                               "dbus-python (Debian: libdbus-1-dev libglib2.0-dev to build)")
        self._daemon_binary = daemon
        self.address = ""
        self._bus: subprocess.Popen[bytes] | None = None
        self._bluez: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        """The environment that makes bleak (and BlueZ tools) use this bus."""
        return {"DBUS_SYSTEM_BUS_ADDRESS": self.address}

    def start(self) -> BluezMock:
        self._bus = subprocess.Popen(
            [self._daemon_binary, "--session", "--nofork", "--nopidfile", "--print-address=1"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        assert self._bus.stdout is not None
        self.address = self._bus.stdout.readline().decode().strip()
        if not self.address:
            self.stop()
            raise RuntimeError("dbus-daemon gave no address")
        self.start_bluez()
        return self

    def start_bluez(self) -> None:
        """The fake ``bluetoothd``: a new one, with no adapter, owning ``org.bluez``."""
        self._bluez = subprocess.Popen(
            [sys.executable, "-m", "dbusmock", "--system", "--template", "bluez5"],
            env={**os.environ, **self.env}, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        self._wait_for_name()

    def stop_bluez(self, *, kill: bool = False) -> None:
        """``bluetoothd`` goes away (``kill``: SIGKILL, as in a crash)."""
        if self._bluez is not None:
            if kill:
                self._bluez.kill()
                self._bluez.wait()
            else:
                terminate(self._bluez)
        self._bluez = None

    def pause_bluez(self) -> None:
        """``bluetoothd`` hangs (SIGSTOP): calls to it get no answer until resumed."""
        if self._bluez is not None:
            self._bluez.send_signal(signal.SIGSTOP)

    def resume_bluez(self) -> None:
        if self._bluez is not None:
            self._bluez.send_signal(signal.SIGCONT)

    def _wait_for_name(self, timeout_s: float = 15.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._bluez is not None and self._bluez.poll() is not None:
                raise RuntimeError(f"dbusmock bluez5 exited with {self._bluez.returncode}")
            answer = subprocess.run(
                ["dbus-send", f"--bus={self.address}", "--print-reply",
                 "--dest=org.freedesktop.DBus", "/org/freedesktop/DBus",
                 "org.freedesktop.DBus.NameHasOwner", f"string:{BLUEZ}"],
                capture_output=True, text=True, timeout=5, check=False)
            if "boolean true" in answer.stdout:
                return
            time.sleep(0.05)
        raise RuntimeError(f"the fake BlueZ did not own {BLUEZ} within {timeout_s:.0f} s")

    def stop(self) -> None:
        self.resume_bluez()
        self.stop_bluez()
        if self._bus is not None:
            terminate(self._bus)
            if self._bus.stdout is not None:
                self._bus.stdout.close()
        self._bus = None

    @contextlib.asynccontextmanager
    async def control(self) -> AsyncIterator[BluezControl]:
        """A D-Bus connection that drives the fake BlueZ; closed on exit."""
        bus = await MessageBus(bus_address=self.address, bus_type=BusType.SYSTEM).connect()
        try:
            yield BluezControl(bus)
        finally:
            bus.disconnect()
            with contextlib.suppress(Exception):
                await bus.wait_for_disconnect()  # type: ignore[no-untyped-call]  # dbus-fast: untyped

    def __enter__(self) -> BluezMock:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()


def device_path(adapter: str, address: str) -> str:
    return f"/org/bluez/{adapter}/dev_{address.upper().replace(':', '_')}"


class BluezControl:
    """Calls on the fake BlueZ (python-dbusmock's ``org.bluez.Mock`` and its generic
    ``org.freedesktop.DBus.Mock`` interface on each object)."""

    def __init__(self, bus: MessageBus) -> None:
        self._bus = bus

    async def _call(self, path: str, interface: str, member: str, signature: str = "",
                    body: list[Any] | None = None) -> list[Any]:
        reply = await self._bus.call(Message(destination=BLUEZ, path=path, interface=interface,
                                             member=member, signature=signature,
                                             body=body or []))
        assert reply is not None
        if reply.message_type == MessageType.ERROR:
            raise RuntimeError(f"fake BlueZ: {member} on {path}: {reply.error_name} "
                               f"{reply.body}")
        return list(reply.body)

    async def add_adapter(self, name: str = "hci0") -> str:
        [path] = await self._call("/", BLUEZ_MOCK, "AddAdapter", "ss", [name, f"fleet-{name}"])
        return str(path)

    async def remove_adapter(self, name: str = "hci0") -> None:
        """The adapter and its devices are gone (unplugged, powered down by rfkill)."""
        await self._call("/", BLUEZ_MOCK, "RemoveAdapterWithDevices", "s", [name])

    async def power(self, name: str, *, on: bool) -> None:
        """The adapter is powered on or off (rfkill, ``bluetoothctl power off``)."""
        await self._call(f"/org/bluez/{name}", MOCK, "UpdateProperties", "sa{sv}",
                         ["org.bluez.Adapter1", {"Powered": Variant("b", on)}])

    async def add_device(self, adapter: str, address: str, *, name: str = "sensor",
                         rssi: int = -60, connectable: bool = True) -> str:
        await self._call("/", BLUEZ_MOCK, "AddDevice", "sss", [adapter, address, name])
        path = device_path(adapter, address)
        await self._call(path, MOCK, "AddMethod", "sssss",
                         [DEVICE, "Connect", "", "", _CONNECT if connectable else _REFUSE])
        await self._call(path, MOCK, "AddMethod", "sssss",
                         [DEVICE, "Disconnect", "", "", _DISCONNECT])
        await self.advertise(adapter, address, rssi=rssi)
        return path

    async def advertise(self, adapter: str, address: str, *, rssi: int = -60,
                        manufacturer_data: Mapping[int, bytes] | None = None,
                        service_data: Mapping[str, bytes] | None = None,
                        service_uuids: list[str] | None = None) -> None:
        """One advertisement: the device's advertised properties change, as BlueZ
        changes them on each advertising report (bleak reports it to scanners)."""
        properties = {
            "RSSI": Variant("n", rssi),
            # Dicts, as BlueZ sends them (the template's initial values are lists).
            "ManufacturerData": Variant("a{qv}", {company: Variant("ay", bytes(data))
                                                  for company, data in
                                                  (manufacturer_data or {}).items()}),
            "ServiceData": Variant("a{sv}", {uuid: Variant("ay", bytes(data))
                                             for uuid, data in (service_data or {}).items()}),
            "UUIDs": Variant("as", list(service_uuids or [])),
        }
        await self._call(device_path(adapter, address), MOCK, "UpdateProperties", "sa{sv}",
                         [DEVICE, properties])

    async def add_characteristic(self, device: str, service_uuid: str, uuid: str, *,
                                 value: bytes = b"", handle: int = 0x10,
                                 flags: tuple[str, ...] = ("read", "notify")) -> str:
        """A GATT service (``handle``) holding one characteristic (``handle + 1``)
        under ``device``'s path; ``ReadValue`` answers its value, ``StartNotify``
        turns notifications on (see :meth:`notify`)."""
        service = f"{device}/service{handle:04x}"
        characteristic = f"{service}/char{handle + 1:04x}"
        service_props = {"UUID": Variant("s", service_uuid), "Device": Variant("o", device),
                         "Primary": Variant("b", True)}
        await self._call("/", MOCK, "AddObject", "ssa{sv}a(ssss)",
                         [service, SERVICE, service_props, []])
        await self._announce(service, SERVICE, service_props)
        char_props = {"UUID": Variant("s", uuid), "Service": Variant("o", service),
                      "Value": Variant("ay", value), "Flags": Variant("as", list(flags)),
                      "Notifying": Variant("b", False)}
        await self._call("/", MOCK, "AddObject", "ssa{sv}a(ssss)", [
            characteristic, CHARACTERISTIC, char_props,
            [["ReadValue", "a{sv}", "ay", _READ],
             ["StartNotify", "", "", _NOTIFYING.format(on="True")],
             ["StopNotify", "", "", _NOTIFYING.format(on="False")]]])
        await self._announce(characteristic, CHARACTERISTIC, char_props)
        return characteristic

    async def _announce(self, path: str, interface: str, properties: dict[str, Variant]) -> None:
        await self._call("/", MOCK, "EmitSignal", "sssav", [
            OBJECT_MANAGER, "InterfacesAdded", "oa{sa{sv}}",
            [Variant("o", path), Variant("a{sa{sv}}", {interface: properties})]])

    async def set_value(self, characteristic: str, value: bytes) -> None:
        """The characteristic's value changes; a client that started notifications
        gets it as a notification (BlueZ's ``PropertiesChanged`` on ``Value``)."""
        await self._call(characteristic, MOCK, "UpdateProperties", "sa{sv}",
                         [CHARACTERISTIC, {"Value": Variant("ay", value)}])

    async def is_notifying(self, characteristic: str) -> bool:
        [value] = await self._call(characteristic, "org.freedesktop.DBus.Properties", "Get",
                                   "ss", [CHARACTERISTIC, "Notifying"])
        return bool(value.value)

    async def is_connected(self, adapter: str, address: str) -> bool:
        [value] = await self._call(device_path(adapter, address), "org.freedesktop.DBus.Properties",
                                   "Get", "ss", [DEVICE, "Connected"])
        return bool(value.value)
