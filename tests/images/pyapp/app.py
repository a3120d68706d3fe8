"""A small app for protocol tests, on the stdlib only: POST echo, a gated stream, a WebSocket echo."""

import asyncio
import base64
import hashlib
import json
import os
import struct
import time

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
released = asyncio.Event()
INSTANCE = os.urandom(4).hex()  # which container answered (a scalable site's two instances differ)
hog = []


async def read_request(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    body = b""
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    return method, target, headers, body


def response(status, body, ctype="text/plain", extra=()):
    head = [f"HTTP/1.1 {status}", f"Content-Type: {ctype}", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def websocket(reader, writer, headers):
    accept = base64.b64encode(hashlib.sha1(headers["sec-websocket-key"].encode() + WS_GUID).digest())
    writer.write(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    while True:
        b0, b1 = await reader.readexactly(2)
        opcode, length = b0 & 0x0F, b1 & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await reader.readexactly(8))
        mask = await reader.readexactly(4) if b1 & 0x80 else b"\0\0\0\0"
        data = bytes(c ^ mask[i % 4] for i, c in enumerate(await reader.readexactly(length)))
        if opcode == 0x8:  # close: answer it and end
            writer.write(bytes([0x88, len(data)]) + data)
            await writer.drain()
            return
        if opcode == 0x9:  # ping -> pong
            opcode = 0xA
        if opcode == 0xA and b0 & 0x0F == 0xA:
            continue
        n = len(data)
        size = (
            bytes([n])
            if n < 126
            else bytes([126]) + struct.pack("!H", n)
            if n < 65536
            else bytes([127]) + struct.pack("!Q", n)
        )
        writer.write(bytes([0x80 | opcode]) + size + data)
        await writer.drain()


async def handle(reader, writer):
    try:
        while True:
            method, target, headers, body = await read_request(reader)
            path = target.split("?", 1)[0]
            if headers.get("upgrade", "").lower() == "websocket":
                await websocket(reader, writer, headers)
                return
            if path == "/echo":
                info = {
                    "method": method,
                    "length": len(body),
                    "sha256": hashlib.sha256(body).hexdigest(),
                    "headers": headers,
                }
                writer.write(response("200 OK", json.dumps(info).encode(), "application/json"))
            elif path == "/stream":
                # Part one, then wait until /release is requested, then part two: proof of streaming.
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
                for part in (b"first:" + b"a" * 4096 + b"\n", None, b"second:" + b"b" * 65536 + b"\n"):
                    if part is None:
                        await released.wait()
                        continue
                    writer.write(b"%x\r\n%s\r\n" % (len(part), part))
                    await writer.drain()
                writer.write(b"0\r\n\r\n")
            elif path == "/slow":  # answers after ?s=SECONDS
                seconds = float(target.partition("?s=")[2] or "1")
                await asyncio.sleep(seconds)
                writer.write(response("200 OK", f"slept {seconds:g}\n".encode()))
            elif path == "/alloc":  # grows its memory by ?mb=N, then answers (or is OOM-killed)
                hog.append(b"\x01" * (int(target.partition("?mb=")[2] or "1") * 1024 * 1024))  # touched pages
                writer.write(response("200 OK", f"holding {sum(map(len, hog)) >> 20} MiB\n".encode()))
            elif path == "/work":  # a CPU-bound request: burns ?ms=N of CPU time, then says which instance did
                ms = float(target.partition("?ms=")[2] or "10")
                end, x = time.process_time() + ms / 1000, 0
                while time.process_time() < end:  # (the clock read is a system call: between chunks of work)
                    for i in range(2000):
                        x = (x * 31 + i) & 0xFFFFFFFF
                writer.write(response("200 OK", f"{INSTANCE} worked {ms:g} ms\n".encode()))
            elif path == "/instance":
                writer.write(response("200 OK", f"{INSTANCE}\n".encode()))
            elif path == "/release":
                released.set()
                writer.write(response("200 OK", b"released\n"))
            else:
                writer.write(response("200 OK", f"pyapp {os.environ.get('APP_NAME', '')} {path}\n".encode()))
            await writer.drain()
            if headers.get("connection", "").lower() == "close":
                return
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main():
    server = await asyncio.start_server(handle, "0.0.0.0", int(os.environ.get("PORT", "8080")), backlog=512)
    async with server:
        await server.serve_forever()


asyncio.run(main())
