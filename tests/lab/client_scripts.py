"""Python source the lab tests' client scripts share (each test runs its scripts in the client
namespace with ``python3 -c SCRIPT ARGS...``, so they are strings, joined before they run).

* ``RAW_IPV4``: imports, the Internet checksum and an IPv4 header, for raw sockets
  (IPPROTO_RAW implies IP_HDRINCL: the script builds the IP header itself).
* ``READ_TO_END``: reads socket ``s`` into ``data`` until the peer closes (``end = "eof"``),
  resets (``"reset"``) or the socket times out (``"timeout"``); expects ``data`` and ``end``
  (None) to be set.
"""

RAW_IPV4 = r"""
import json, os, socket, struct, sys, time

def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff

def ip_header(src, dst, proto, payload_len, ident):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + payload_len, ident, 0x4000, 64, proto, 0,
                    socket.inet_aton(src), socket.inet_aton(dst))
    return h[:10] + struct.pack("!H", csum(h)) + h[12:]
"""

READ_TO_END = r"""
while end is None:
    try:
        b = s.recv(65536)
    except socket.timeout:
        end = "timeout"; break
    except ConnectionResetError:
        end = "reset"; break
    if not b:
        end = "eof"; break
    data += b
"""
