"""mDNS (zeroconf): advertise the web UI as _http._tcp and the controller as _vending._tcp."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Sequence
from typing import Any

from .threads import Worker

logger = logging.getLogger("vending.mdns")

HTTP_TYPE = "_http._tcp.local."
VENDING_TYPE = "_vending._tcp.local."


ALL_ADDRESSES = ("", "0.0.0.0", "::")


def _ipv4(host: str) -> str:
    return "127.0.0.1" if host == "localhost" else host


def advertised_addresses(host: str) -> list[str]:
    """The IPv4 addresses to publish: the listen address, or every non-loopback one for 0.0.0.0."""
    if host not in ALL_ADDRESSES:
        return [_ipv4(host)]
    import ifaddr  # installed with zeroconf

    return sorted({ip.ip for adapter in ifaddr.get_adapters() for ip in adapter.ips
                   if isinstance(ip.ip, str) and not ip.ip.startswith("127.")})


def advertised_interfaces(host: str) -> list[str] | None:
    """Where to send mDNS: every interface for 0.0.0.0, else only the one listened on."""
    return None if host in ALL_ADDRESSES else [_ipv4(host)]


class MdnsAdvertiser:
    """Registers the two services on a named thread (probing takes ~1 s); stop() says goodbye."""

    name = "mdns"

    def __init__(self, instance: str, http_port: int, discovery_port: int | None,
                 addresses: Sequence[str], interfaces: Sequence[str] | None = None,
                 version: str = "") -> None:
        self.instance = instance
        self.http_port = http_port
        self.discovery_port = discovery_port
        self.addresses = list(addresses)
        self.interfaces = list(interfaces) if interfaces is not None else None
        self.version = version
        self.registered: list[str] = []
        self._zeroconf: Any = None
        self._infos: list[Any] = []
        self._lock = threading.Lock()
        self._worker = Worker("mdns", self._register)

    def service_infos(self) -> list[Any]:
        """What gets published: vending.local serves HTTP and names the UDP discovery port."""
        from zeroconf import ServiceInfo

        host = f"{self.instance}.local."
        packed = [socket.inet_aton(a) for a in self.addresses]
        vending_txt = {"path": "/", "api": "/status", "http_port": str(self.http_port),
                       "version": self.version}
        if self.discovery_port is not None:
            vending_txt["discovery_port"] = str(self.discovery_port)
        return [
            ServiceInfo(HTTP_TYPE, f"{self.instance}.{HTTP_TYPE}", addresses=packed,
                        port=self.http_port, properties={"path": "/"}, server=host),
            ServiceInfo(VENDING_TYPE, f"{self.instance}.{VENDING_TYPE}", addresses=packed,
                        port=self.http_port, properties=vending_txt, server=host),
        ]

    def start(self) -> None:
        """Begin registering in the background; the server does not wait for mDNS."""
        self._worker.start()

    def _register(self) -> None:
        try:
            from zeroconf import InterfaceChoice, IPVersion, Zeroconf

            interfaces = self.interfaces if self.interfaces is not None else InterfaceChoice.All
            zc = Zeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
            with self._lock:
                if self._worker.stopping.is_set():
                    zc.close()
                    return
                self._zeroconf = zc
            for info in self.service_infos():
                zc.register_service(info, allow_name_change=True)
                self._infos.append(info)
                self.registered.append(info.name)
            logger.info("mDNS: advertising %s on %s (http %d, discovery %s)", ", ".join(self.registered),
                        ", ".join(self.addresses) or "no address", self.http_port, self.discovery_port)
        except Exception as exc:
            # mDNS is a convenience: the server works without it, so say why and carry on.
            logger.warning("mDNS advertising is off: %s (use --no-mdns to silence this)", exc)

    def stop(self) -> None:
        """Unregister (goodbye packets) and close; safe twice."""
        with self._lock:
            # Under the lock: _register either sees this or has handed over its Zeroconf.
            self._worker.stopping.set()
        self._worker.stop()
        zc, self._zeroconf = self._zeroconf, None
        if zc is None:
            return
        try:
            for info in self._infos:
                zc.unregister_service(info)
        except Exception:
            logger.debug("mDNS goodbye failed", exc_info=True)
        finally:
            zc.close()
