"""Find BACnet/IP devices: Who-Is / I-Am through a BBMD, by local broadcast, or to one address."""

from __future__ import annotations

from bacpypes3.basetypes import Segmentation
from bacpypes3.local.device import DeviceObject
from bacpypes3.pdu import Address, GlobalBroadcast

from drivers.bacnet_stack import build_stack, split_address
from drivers.bacnet_values import CLIENT_INSTANCE
from drivers.base import ConnectionLost


async def discover(*, bbmd: str | None = None, interface: str | None = None, target: str | None = None,
                   port: int = 47808, local_host: str = "127.0.0.1", low_limit: int | None = None,
                   high_limit: int | None = None, timeout_s: float = 3.0, ttl_s: int = 30) -> list[tuple[int, str]]:
    """Who-Is / I-Am: the (device instance, "ip:port") of every device that answers, sorted.

    One way to reach the devices:
    - `bbmd` ("ip:port"): register as a foreign device there (from `local_host`, any port) and broadcast
      the Who-Is through it, to every device on the BBMD's network and its other foreign devices;
    - `interface` ("ip/prefix", e.g. "192.168.1.10/24"): broadcast on that network from `port` (47808 on a
      real LAN), as a device on it;
    - `target` ("ip:port"): a Who-Is to that one address.
    """
    if sum(way is not None for way in (bbmd, interface, target)) != 1:
        raise ValueError("discovery takes exactly one of: a BBMD, a local interface, a target address")
    device_object = DeviceObject(objectIdentifier=("device", CLIENT_INSTANCE), objectName="gridctl-discovery",
                                 vendorIdentifier=999, segmentationSupported=Segmentation.noSegmentation)
    if interface is not None:
        stack = build_stack([device_object], host=interface, port=port)
    else:
        stack = build_stack([device_object], host=local_host, port=0, mode="foreign" if bbmd else "normal",
                            bbmd_address=bbmd, ttl_s=ttl_s)
    try:
        await stack.wait_bound()
        if bbmd is not None and not await stack.wait_registered(timeout_s):
            raise ConnectionLost(f"BBMD {bbmd} did not accept our foreign-device registration")
        destination = GlobalBroadcast() if target is None else Address(":".join(map(str, split_address(target))))
        i_ams = await stack.app.who_is(low_limit, high_limit, address=destination, timeout=timeout_s)
    finally:
        stack.close()
    found: dict[int, str] = {}
    own = stack.address.addrTuple
    for i_am in i_ams or []:
        source = i_am.pduSource.addrTuple
        if source == own:
            continue
        found[i_am.iAmDeviceIdentifier[1]] = f"{source[0]}:{source[1]}"
    return sorted(found.items())
