"""python-dbusmock template: bluetoothd as cnaptd sees it.

Extends dbusmock's `bluez5` template with what that one lacks:

* `org.bluez.NetworkServer1` on every adapter (`Register(uuid, bridge)`,
  `Unregister(uuid)`), bound like BlueZ's to the caller's D-Bus connection:
  the registration disappears when that connection does;
* agents registered with the caller's bus name, so the mock can call them;
* `org.bluez.Mock` helpers that drive a phone through BlueZ's side of
  pairing and connecting:
  - `SimulatePairing(adapter, address, kind, passkey)` calls the default
    agent (`confirm` → RequestConfirmation, `authorize` →
    RequestAuthorization, `display` → DisplayPasskey) and on success marks
    the device paired, as bluetoothd does when the link key is stored;
  - `SimulateNapConnect(adapter, address)` asks the agent to authorize the
    NAP service and on success counts the device as connected to the
    bridge (bluetoothd would add its bnep interface to it);
  - `Result(address)` — "pending", "ok" or "error: <name>: <message>";
  - `NapRegistration(adapter)` — "<bridge> <owner>" or "".
"""

# SPDX-License-Identifier: LGPL-3.0-or-later (as python-dbusmock's templates)

import dbus

from dbusmock import mockobject
from dbusmock.templates import bluez5
from dbusmock.templates.bluez5 import *  # noqa: F401,F403  (the template's methods)

BUS_NAME = bluez5.BUS_NAME
MAIN_OBJ = bluez5.MAIN_OBJ
SYSTEM_BUS = True
IS_OBJECT_MANAGER = True

NETWORK_SERVER1 = "org.bluez.NetworkServer1"
AGENT1 = "org.bluez.Agent1"
NAP_UUID = "00001116-0000-1000-8000-00805f9b34fb"


@dbus.service.method(bluez5.AGENT_MANAGER_IFACE, in_signature="os", out_signature="", sender_keyword="sender")
def CboxRegisterAgent(manager, agent_path, capability, sender=None):
    bluez5.RegisterAgent(manager, agent_path, capability)
    manager.agent_owners[str(agent_path)] = str(sender)


@dbus.service.method(NETWORK_SERVER1, in_signature="ss", out_signature="", sender_keyword="sender")
def CboxRegister(adapter, uuid, bridge, sender=None):
    if str(uuid).lower() not in ("nap", NAP_UUID):
        raise dbus.exceptions.DBusException("Invalid UUID " + uuid, name="org.bluez.Error.InvalidArguments")
    if adapter.nap is not None:
        raise dbus.exceptions.DBusException("Already registered", name="org.bluez.Error.AlreadyExists")
    adapter.nap = (str(bridge), str(sender))

    def gone(new_owner):
        if not new_owner and adapter.nap is not None and adapter.nap[1] == str(sender):
            adapter.nap = None

    adapter.nap_watch = adapter.connection.watch_name_owner(str(sender), gone)


@dbus.service.method(NETWORK_SERVER1, in_signature="s", out_signature="", sender_keyword="sender")
def CboxUnregister(adapter, uuid, sender=None):
    if adapter.nap is None or adapter.nap[1] != str(sender):
        raise dbus.exceptions.DBusException("Not registered", name="org.bluez.Error.DoesNotExist")
    adapter.nap = None


def _patch(obj, iface, name, sig, fn):
    """Install `fn` (with its sender keyword) as `iface.name` on `obj`."""
    obj.methods.setdefault(iface, {})[name] = (sig, "", "", mockobject.loggedmethod(obj, fn))


def load(mock, parameters):
    bluez5.load(mock, parameters)
    manager = mockobject.objects["/org/bluez"]
    manager.agent_owners = {}
    _patch(manager, bluez5.AGENT_MANAGER_IFACE, "RegisterAgent", "os", CboxRegisterAgent)
    mock.results = {}


@dbus.service.method(bluez5.BLUEZ_MOCK_IFACE, in_signature="ss", out_signature="s")
def AddAdapter(self, device_name, system_name):
    path = bluez5.AddAdapter(self, device_name, system_name)
    adapter = mockobject.objects[path]
    adapter.nap = None
    _patch(adapter, NETWORK_SERVER1, "Register", "ss", CboxRegister)
    _patch(adapter, NETWORK_SERVER1, "Unregister", "s", CboxUnregister)
    return path


@dbus.service.method(bluez5.BLUEZ_MOCK_IFACE, in_signature="s", out_signature="s")
def NapRegistration(self, device_name):
    adapter = mockobject.objects.get("/org/bluez/" + device_name)
    if adapter is None or adapter.nap is None:
        return ""
    return adapter.nap[0] + " " + adapter.nap[1]


def _device(adapter_name, address):
    path = "/org/bluez/" + adapter_name + "/dev_" + address.replace(":", "_").upper()
    device = mockobject.objects.get(path)
    if device is None:
        raise dbus.exceptions.DBusException("No device " + address, name=bluez5.BLUEZ_MOCK_IFACE + ".NoSuchDevice")
    return path, device


def _agent(self):
    manager = mockobject.objects["/org/bluez"]
    path = manager.default_agent
    if path is None:
        raise dbus.exceptions.DBusException("No agent registered", name="org.bluez.Error.AuthenticationFailed")
    owner = manager.agent_owners.get(str(path))
    return self.connection.get_object(owner, path, introspect=False)


def _call(self, address, method, args, then):
    """Calls the agent without blocking the mock (the agent may call back)."""
    self.results[address] = "pending"

    def ok(*_):
        self.results[address] = "ok"
        then()

    def err(e):
        self.results[address] = f"error: {e.get_dbus_name()}: {e.get_dbus_message()}"

    agent = _agent(self)
    getattr(agent, method)(*args, dbus_interface=AGENT1, reply_handler=ok, error_handler=err, timeout=60)


@dbus.service.method(bluez5.BLUEZ_MOCK_IFACE, in_signature="sssu", out_signature="")
def SimulatePairing(self, adapter_name, address, kind, passkey):
    path, _device_obj = _device(adapter_name, address)
    methods = {
        "confirm": ("RequestConfirmation", (dbus.ObjectPath(path), dbus.UInt32(passkey))),
        "authorize": ("RequestAuthorization", (dbus.ObjectPath(path),)),
        "display": ("DisplayPasskey", (dbus.ObjectPath(path), dbus.UInt32(passkey), dbus.UInt16(0))),
    }
    if kind not in methods:
        raise dbus.exceptions.DBusException("kind: confirm, authorize or display", name="org.bluez.Error.InvalidArguments")
    method, args = methods[kind]
    _call(self, address, method, args, lambda: bluez5.PairDevice(self, adapter_name, address))


@dbus.service.method(bluez5.BLUEZ_MOCK_IFACE, in_signature="ss", out_signature="")
def SimulateNapConnect(self, adapter_name, address):
    path, device = _device(adapter_name, address)
    adapter = mockobject.objects["/org/bluez/" + adapter_name]
    if adapter.nap is None:
        raise dbus.exceptions.DBusException("No NAP registered", name="org.bluez.Error.NotSupported")

    def connected():
        device.connected = True
        device.UpdateProperties(bluez5.DEVICE_IFACE, {"Connected": dbus.Boolean(True)})

    _call(self, address, "AuthorizeService", (dbus.ObjectPath(path), NAP_UUID), connected)


@dbus.service.method(bluez5.BLUEZ_MOCK_IFACE, in_signature="s", out_signature="s")
def Result(self, address):
    return self.results.get(address, "")
