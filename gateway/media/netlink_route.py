"""Where this host sends a packet: one RTM_GETROUTE request over rtnetlink (RFC 3549).

The kernel forwarder must know, for each route of a lane, whether the destination
is one of this host's own addresses and, if not, by which interface the packet
leaves; the kernel's own route lookup answers both, as ``ip route get`` does.
"""

from __future__ import annotations

import os
import socket
import struct
from typing import NamedTuple

RTM_GETROUTE = 26
RTM_NEWROUTE = 24
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
RTA_DST = 1
RTA_SRC = 2
RTA_OIF = 4
RTN_LOCAL = 2

RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
ROUTE_EVENTS = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE
"""What can change where a packet leaves: links, IPv4 addresses and routes."""

_NLMSGHDR = struct.Struct("=IHHII")
_RTMSG = struct.Struct("=BBBBBBBBI")
_RTATTR = struct.Struct("=HH")


class RouteLookup(NamedTuple):
    """The kernel's answer for one IPv4 destination."""

    local: bool
    """The destination is an address of this host (route type RTN_LOCAL)."""
    ifindex: int
    """The interface the packet leaves by (``lo`` for a local destination)."""


def _align(length: int) -> int:
    return (length + 3) & ~3


def lookup_route(destination: str, source: str | None = None) -> RouteLookup:
    """The route this host takes to an IPv4 address (from ``source``, which policy
    routing may take into account); OSError when there is none."""
    attrs = _RTATTR.pack(_RTATTR.size + 4, RTA_DST) + socket.inet_aton(destination)
    if source is not None:
        attrs += _RTATTR.pack(_RTATTR.size + 4, RTA_SRC) + socket.inet_aton(source)
    body = _RTMSG.pack(socket.AF_INET, 32, 32 if source is not None else 0, 0, 0, 0, 0, 0, 0)
    body += attrs
    request = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), RTM_GETROUTE, NLM_F_REQUEST, 1, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as nl:
        nl.sendto(request + body, (0, 0))
        reply = nl.recv(65536)
    length, kind, _, _, _ = _NLMSGHDR.unpack_from(reply, 0)
    if kind == NLMSG_ERROR:
        (code,) = struct.unpack_from("=i", reply, _NLMSGHDR.size)
        raise OSError(-code, f"route to {destination}: {os.strerror(-code)}")
    if kind != RTM_NEWROUTE:
        raise OSError(f"route to {destination}: unexpected netlink message type {kind}")
    route_type = _RTMSG.unpack_from(reply, _NLMSGHDR.size)[7]
    offset, ifindex = _NLMSGHDR.size + _RTMSG.size, 0
    while offset + _RTATTR.size <= length:
        attr_len, attr_type = _RTATTR.unpack_from(reply, offset)
        if attr_len < _RTATTR.size:
            break
        if attr_type == RTA_OIF:
            (ifindex,) = struct.unpack_from("=I", reply, offset + _RTATTR.size)
        offset += _align(attr_len)
    return RouteLookup(route_type == RTN_LOCAL, ifindex)


def route_events() -> socket.socket:
    """A non-blocking rtnetlink socket that becomes readable whenever a link, an IPv4
    address or an IPv4 route of this host changes (the messages themselves are not
    needed: any of them may change a lookup)."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    try:
        sock.setblocking(False)
        sock.bind((0, ROUTE_EVENTS))
    except BaseException:
        sock.close()
        raise
    return sock
