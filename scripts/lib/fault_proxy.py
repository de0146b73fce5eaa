"""A fault-injecting HTTP/1.1 proxy in front of the AWS emulator, for scripts/chaos.sh.

Every DynamoDB and S3 request (SQS and SES pass untouched) may get one fault, each at its own
rate:
  throttle   answered without reaching the emulator: DynamoDB's
             ProvisionedThroughputExceededException (400), S3's SlowDown (503)
  error      answered without reaching the emulator: a 500
  reset      forwarded; the client gets the response's head and half its body, then a TCP reset
             (a connection dying in the middle of a response body). Not on S3 POSTs, which
             create or complete a multipart upload: repeating one the emulator already carried out
             tests the emulator, not the client
  upload_reset  on S3 PUTs (part uploads, small objects): half the request body is read, then
             a TCP reset; the emulator never sees the request
  lost_reply on conditional S3 PUTs (If-None-Match, If-Match) and CompleteMultipartUpload:
             forwarded, so the emulator applies the write, then a TCP reset instead of its reply;
             the client's retry meets the object its own write made (or NoSuchUpload)
  latency    forwarded after a delay (default 200 ms)

Usage: fault_proxy.py --upstream http://127.0.0.1:PORT --port-file F --rates throttle=0.02,...
       [--seed N] [--stats-file F]
It prints nothing; the port it listens on goes to --port-file, and counts of requests and faults
by kind to --stats-file (JSON) on SIGTERM and every second.
"""

import argparse
import asyncio
import json
import random
import signal
import socket
import struct
import sys
import time
from urllib.parse import urlparse

KINDS = ("throttle", "error", "reset", "upload_reset", "lost_reply", "latency")


def parse_rates(text):
    rates = dict.fromkeys(KINDS, 0.0)
    for part in filter(None, text.split(",")):
        name, _, value = part.partition("=")
        if name not in rates:
            sys.exit(f"fault_proxy: unknown fault {name!r}; known: {', '.join(KINDS)}")
        rates[name] = float(value)
    if sum(rates.values()) > 1:
        sys.exit("fault_proxy: the rates add up to more than 1")
    return rates


async def read_head(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return lines[0], headers


def header(headers, name):
    name = name.lower()
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def without(headers, *names):
    names = {n.lower() for n in names}
    return [(k, v) for k, v in headers if k.lower() not in names]


async def read_chunked(reader):
    body = bytearray()
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";")[0].strip(), 16)
        if size == 0:
            # Trailers, up to the empty line.
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass
            return bytes(body)
        body += await reader.readexactly(size)
        await reader.readexactly(2)


def encode(start, headers, body=b""):
    lines = [start] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def reset(writer):
    """Closes with a TCP reset (SO_LINGER 0), as a dying connection does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class Proxy:
    def __init__(self, upstream, rates, seed, latency):
        url = urlparse(upstream)
        self.host, self.port = url.hostname, url.port
        self.rates = rates
        self.random = random.Random(seed)
        self.latency = latency
        self.stats = {"requests": 0, **dict.fromkeys(KINDS, 0)}

    def service(self, headers, target):
        amz_target = header(headers, "x-amz-target") or ""
        if amz_target.startswith("DynamoDB_"):
            return "dynamodb"
        if amz_target.startswith("AmazonSQS") or target.startswith("/v2/email"):
            return "other"
        if header(headers, "content-type") == "application/x-www-form-urlencoded":
            return "other"  # SQS's query protocol
        return "s3"

    def choose(self, method, service, conditional):
        if service == "other":
            return None
        draw = self.random.random()
        for kind in KINDS:
            rate = self.rates[kind]
            if draw < rate:
                if kind == "reset" and service == "s3" and method == "POST":
                    return None
                if kind == "upload_reset" and not (service == "s3" and method == "PUT"):
                    return None
                if kind == "lost_reply" and not (service == "s3" and conditional):
                    return None
                return kind
            draw -= rate
        return None

    async def handle(self, reader, writer):
        try:
            while True:
                try:
                    start, headers = await read_head(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                method, target, _ = start.split(" ", 2)
                if header(headers, "expect") == "100-continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                    await writer.drain()
                length = header(headers, "content-length")
                chunked = (header(headers, "transfer-encoding") or "").lower() == "chunked"
                service = self.service(headers, target)
                # A write whose retry meets its own result: a conditional PUT, or a Complete.
                conditional = bool(header(headers, "if-none-match") or header(headers, "if-match")) \
                    or (method == "POST" and "uploadId=" in target)
                fault = self.choose(method, service, conditional)
                self.stats["requests"] += 1
                if fault:
                    self.stats[fault] += 1
                if fault == "upload_reset" and length and int(length) > 1:
                    await reader.readexactly(int(length) // 2)
                    reset(writer)
                    return
                if chunked:
                    body = await read_chunked(reader)
                else:
                    body = await reader.readexactly(int(length)) if length else b""
                if fault in ("throttle", "error"):
                    writer.write(self.error_response(fault, service))
                    await writer.drain()
                    continue
                if fault == "latency":
                    await asyncio.sleep(self.latency)
                response = await self.forward(start, headers, body, method)
                if fault == "lost_reply":
                    reset(writer)
                    return
                if fault == "reset":
                    head_end = response.index(b"\r\n\r\n") + 4
                    body_len = len(response) - head_end
                    writer.write(response[: head_end + body_len // 2])
                    await writer.drain()
                    reset(writer)
                    return
                writer.write(response)
                await writer.drain()
                if header(headers, "connection") == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if not writer.transport.is_closing():
                writer.close()

    def error_response(self, fault, service):
        if service == "dynamodb":
            if fault == "throttle":
                status, kind = "400 Bad Request", "ProvisionedThroughputExceededException"
            else:
                status, kind = "500 Internal Server Error", "InternalServerError"
            body = json.dumps(
                {"__type": f"com.amazonaws.dynamodb.v20120810#{kind}", "message": "injected"}
            ).encode()
            content_type = "application/x-amz-json-1.0"
        else:
            if fault == "throttle":
                status, code = "503 Slow Down", "SlowDown"
            else:
                status, code = "500 Internal Server Error", "InternalError"
            body = f"<Error><Code>{code}</Code><Message>injected</Message></Error>".encode()
            content_type = "application/xml"
        return encode(
            f"HTTP/1.1 {status}",
            [("Content-Type", content_type), ("Content-Length", str(len(body)))],
            body,
        )

    async def forward(self, start, headers, body, method):
        """The emulator's whole response, re-framed with a Content-Length."""
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        out = without(headers, "expect", "transfer-encoding", "content-length", "connection")
        if body or method in ("PUT", "POST"):
            out.append(("Content-Length", str(len(body))))
        out.append(("Connection", "close"))
        up_writer.write(encode(start, out, body))
        await up_writer.drain()
        status_line, response_headers = await read_head(up_reader)
        status = int(status_line.split(" ")[1])
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            payload = b""
            kept = response_headers
        else:
            if (header(response_headers, "transfer-encoding") or "").lower() == "chunked":
                payload = await read_chunked(up_reader)
            else:
                length = header(response_headers, "content-length")
                payload = (
                    await up_reader.readexactly(int(length)) if length else await up_reader.read()
                )
            kept = without(response_headers, "transfer-encoding", "content-length", "connection")
            kept.append(("Content-Length", str(len(payload))))
        up_writer.close()
        return encode(status_line, kept, payload)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--rates", default="")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--stats-file")
    args = parser.parse_args()
    proxy = Proxy(args.upstream, parse_rates(args.rates), args.seed, args.latency_ms / 1000)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with open(args.port_file, "w") as f:
        f.write(str(port))

    def save_stats():
        if args.stats_file:
            with open(args.stats_file, "w") as f:
                json.dump(proxy.stats, f)

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        while not stop.is_set():
            save_stats()
            try:
                await asyncio.wait_for(stop.wait(), 1)
            except asyncio.TimeoutError:
                pass
    save_stats()


if __name__ == "__main__":
    asyncio.run(main())
