"""h2spec-style negative cases against the proxy with python's h2, which can be told to send
what a well-behaved client would not. Prints one JSON object per case: the status the proxy
answered, or the RST_STREAM / GOAWAY error code it reset with.

usage: h2_negative.py PORT ROOT_PEM
"""
import json
import socket
import ssl
import sys

import h2.config
import h2.connection
import h2.events

PORT, ROOT = int(sys.argv[1]), sys.argv[2]


def exchange(headers, body=None, end_with_data=True):
    ctx = ssl.create_default_context(cafile=ROOT)
    ctx.set_alpn_protocols(["h2"])
    sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", PORT), timeout=10), server_hostname="localhost")
    cfg = h2.config.H2Configuration(client_side=True, validate_outbound_headers=False,
                                    normalize_outbound_headers=False, validate_inbound_headers=False)
    conn = h2.connection.H2Connection(config=cfg)
    conn.initiate_connection()
    conn.update_settings({h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 1 << 20})
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, headers, end_stream=body is None)
    if body is not None:
        conn.send_data(sid, body, end_stream=end_with_data)
    sock.sendall(conn.data_to_send())
    out = {"status": None, "reset": None, "goaway": None, "body": ""}
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    out["status"] = int(dict(ev.headers)[b":status"])
                elif isinstance(ev, h2.events.DataReceived):
                    out["body"] += ev.data.decode("utf-8", "replace")
                    conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                elif isinstance(ev, h2.events.StreamReset):
                    out["reset"] = ev.error_code.name if hasattr(ev.error_code, "name") else ev.error_code
                    raise StopIteration
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    out["goaway"] = ev.error_code.name if hasattr(ev.error_code, "name") else ev.error_code
                    raise StopIteration
                elif isinstance(ev, h2.events.StreamEnded):
                    raise StopIteration
            sock.sendall(conn.data_to_send())
    except (StopIteration, socket.timeout, ssl.SSLError, ConnectionError):
        pass
    sock.close()
    return out


def base(method=b"GET", path=b"/n", authority=b"localhost"):
    h = [(b":method", method), (b":scheme", b"https"), (b":path", path)]
    if authority is not None:
        h.append((b":authority", authority))
    return h


import h2.settings  # noqa: E402  (after the functions, to keep the cases at the end)

cases = {
    "oversize_head": base() + [(b"x-big", b"a" * 70000)],
    "uppercase_name": base() + [(b"X-Upper", b"1")],
    "connection_header": base() + [(b"connection", b"keep-alive")],
    "te_not_trailers": base() + [(b"te", b"gzip")],
    "trace": base(method=b"TRACE"),
    "no_authority": base(authority=None),
    "userinfo_authority": base(authority=b"user@localhost"),
    "two_cookies": base() + [(b"cookie", b"a=1"), (b"cookie", b"b=2")],
}
for name, headers in cases.items():
    print(json.dumps({"case": name, **exchange(headers)}))
short = base(method=b"POST") + [(b"content-length", b"10")]
print(json.dumps({"case": "content_length_mismatch", **exchange(short, body=b"12345")}))
