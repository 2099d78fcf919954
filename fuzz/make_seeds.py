#!/usr/bin/env python3
"""Writes the seed corpus fuzz/corpus/<target>/ (see fuzz/README.md): small real inputs.

wire:   the packets of the golden-packet tests (tests/unit/packet_layer_test.cpp): a Linux SYN
        with MSS, SACK-permitted, timestamps and window scale, its SYN/ACK, a request segment,
        a SACK-carrying ACK, FIN and RST; ARP requests, replies and a gratuitous announcement.
http:   requests and replies from tests/unit/http_framer_test.cpp, behind the control byte the
        target reads (0x00 requests; 0x80 | HEAD mask for replies).
peer:   each message type as the peer encodes it (src/peer/messages.cpp), behind its type byte,
        and a channel stream of two frames sealed with the target's test key.
config: the example of tests/unit/config_test.cpp and a config with every table.
Run: python3 fuzz/make_seeds.py (rewrites the corpus folders' seed-* files).
"""
import hashlib
import hmac
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT, SERVER = bytes([198, 18, 1, 10]), bytes([198, 18, 0, 100])
# The same bytes as kTestKey in fuzz/peer_fuzz.cpp.
TEST_KEY = b"understudy fuzz key 0123456789ab"


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def tcp_packet(src, dst, sport, dport, seq, ack, flags, opts=b"", payload=b"", window=65535):
    opts += b"\0" * (-len(opts) % 4)
    off = (20 + len(opts)) // 4
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, off << 4, flags, window, 0, 0)
    tcp += opts + payload
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return ip + tcp


FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
SYN_OPTS = bytes([2, 4, 0x05, 0xB4, 4, 2, 8, 10]) + struct.pack("!II", 1000, 0) + bytes([1, 3, 3, 7])
TS_OPTS = bytes([1, 1, 8, 10]) + struct.pack("!II", 1001, 5000)
SACK_OPTS = bytes([1, 1, 5, 18]) + struct.pack("!IIII", 2000, 2100, 2200, 2300)
GET = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"


def arp(op, smac, sip, tmac, tip, eth_dst):
    body = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, smac, sip, tmac, tip)
    return body, eth_dst + smac + struct.pack("!H", 0x0806) + body


MAC_A, MAC_B, BCAST = bytes([2, 0, 0, 0, 0, 1]), bytes([2, 0, 0, 0, 0, 2]), b"\xff" * 6
arp_req, arp_req_frame = arp(1, MAC_A, CLIENT, b"\0" * 6, SERVER, BCAST)
arp_rep, arp_rep_frame = arp(2, MAC_B, SERVER, MAC_A, CLIENT, MAC_A)
garp, garp_frame = arp(1, MAC_B, SERVER, b"\0" * 6, SERVER, BCAST)
ETH_IP = MAC_B + MAC_A + struct.pack("!H", 0x0800)

WIRE = {
    "syn": tcp_packet(CLIENT, SERVER, 40000, 80, 1000, 0, SYN, SYN_OPTS),
    "synack": tcp_packet(SERVER, CLIENT, 80, 40000, 7000, 1001, SYN | ACK, SYN_OPTS),
    "request": tcp_packet(CLIENT, SERVER, 40000, 80, 1001, 7001, PSH | ACK, TS_OPTS, GET),
    "sack": tcp_packet(SERVER, CLIENT, 80, 40000, 7001, 1001, ACK, SACK_OPTS),
    "fin": tcp_packet(CLIENT, SERVER, 40000, 80, 1029, 7001, FIN | ACK, TS_OPTS),
    "rst": tcp_packet(CLIENT, SERVER, 40000, 80, 1030, 0, RST),
    "eth-request": ETH_IP + tcp_packet(CLIENT, SERVER, 40000, 80, 1001, 7001, ACK, b"", GET),
    "arp-request": arp_req,
    "arp-reply": arp_rep,
    "eth-arp-request": arp_req_frame,
    "eth-arp-reply": arp_rep_frame,
    "eth-gratuitous-arp": garp_frame + b"\0" * 18,  # padded to 60 bytes as on the wire
}


def vnet(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset):
    # struct virtio_net_hdr in the host's byte order (little-endian here), as TUN and AF_PACKET
    # hand it with offloads on (src/wire/offload.hpp).
    return struct.pack("<BBHHHH", flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)


# A TSO super-segment from the TUN (3 segments of 1000) and a tap frame whose checksum the
# sender left partial: the Segmenter's two jobs.
BIG = tcp_packet(SERVER, CLIENT, 80, 40000, 7001, 1029, PSH | ACK, TS_OPTS, bytes(range(256)) * 10)
WIRE["vnet-tso"] = vnet(1, 1, 52, 1000, 20, 16) + BIG
WIRE["vnet-eth-partial"] = vnet(1, 0, 0, 0, 14 + 20, 16) + ETH_IP + WIRE["request"]

REQUESTS = [
    GET,
    b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n"
    b"HEAD /c HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world",
    b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: t\r\n\r\n",
    b"POST /big HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 4\r\n\r\nbody",
    b"\r\n\r\nGET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nOPTIONS * HTTP/1.1\r\n\r\n",
    b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    b"DELETE /d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
]
REPLIES = [  # (HEAD mask, stream)
    (0, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
    (0, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
    (0, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"),
    (1, b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"
        b"HTTP/1.1 304 Not Modified\r\n\r\n"),
    (0, b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall of this until the close"),
    (0, b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
]


def key(ip=CLIENT, port=40000, isn=1000):
    return ip + struct.pack("!HI", port, isn)


def text(s):
    return bytes([len(s)]) + s


SETTINGS = [(b"service.advertised", b"198.18.0.100:80"), (b"peer.port", b"7400"),
            (b"heartbeat.interval_ms", b"20"), (b"heartbeat.timeout_ms", b"100")]
HELLO = bytes([1, 1]) + struct.pack("!Q", 42) + bytes(range(16)) + bytes([len(SETTINGS)]) + \
    b"".join(text(k) + text(v) for k, v in SETTINGS)
PEER = {  # type byte, payload
    "hello": (1, HELLO),
    "has": (2, key() + struct.pack("!I", 2000) + bytes([1]) + struct.pack("!I", 9000)),
    "reply": (3, key() + struct.pack("!Q", 0) + b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
    "reply-end": (4, key() + struct.pack("!QQ", 0, 40)),
    "close": (5, key() + struct.pack("!Q", 40)),
    "reply-ack": (6, key() + struct.pack("!Q", 41)),
    "abort": (7, key()),
    "leaving": (8, b""),
    "adopt": (9, key() + struct.pack("!IIHBBHB", 1029, 7041, 502, 7, 7, 1460, 1) + GET),
    "heartbeat": (16, bytes([0, 1]) + struct.pack("!Q", 42)),
    "relay": (17, WIRE["request"]),
}


def seal(type_, counter, payload):
    head = struct.pack("!BBHQI", 1, type_, 0, counter, len(payload)) + payload
    return head + hmac.new(TEST_KEY, head, hashlib.sha256).digest()[:16]


CONFIG_EXAMPLE = b"""[service]
advertised = "198.18.0.100:80"   # the IP:port clients use
interface  = "eth0"              # LAN interface shared with the peer
[node]
role    = "primary"              # or "backup"
address = "198.18.0.11"          # this node's own LAN address
server  = "127.0.0.1:8080"       # the web server this node forwards to
[peer]
address  = "198.18.0.12"
key_file = "peer.key"            # relative paths are relative to the config file's directory
[heartbeat]
interval_ms = 20
timeout_ms  = 100
"""
CONFIG_FULL = CONFIG_EXAMPLE.replace(b"[peer]\n", b"[peer]\nport = 9000\n").replace(
    b"[node]\n", b"[node]\ncontrol_socket = \"run/ctl.sock\"\nstartup_wait_ms = 0\n") + b"""
[tun]
name = "us1"
address = "10.99.0.1"
prefix = 24
mtu = 9000
[limits]
max_connections = 10
request_cache_bytes = 1000
replication_window_bytes = 2000
idle_timeout_ms = 60000
[log]
level = "debug"
"""


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def main():
    for name, data in WIRE.items():
        write("wire", name, data)
    for i, r in enumerate(REQUESTS):
        write("http", "request-%d" % i, b"\x00" + r)
    write("http", "request-limit", b"\x01" + REQUESTS[2])
    for i, (mask, r) in enumerate(REPLIES):
        write("http", "reply-%d" % i, bytes([0x80 | mask]) + r)
    for name, (t, payload) in PEER.items():
        write("peer", name, bytes([t]) + payload)
    write("peer", "channel-stream", seal(1, 1, HELLO) + seal(3, 2, PEER["reply"][1]))
    write("config", "example", CONFIG_EXAMPLE)
    write("config", "full", CONFIG_FULL)


if __name__ == "__main__":
    main()
