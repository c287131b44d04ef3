#!/usr/bin/env python3
"""Many collectors watching their flags live, against a running pipeline (scripts/run-local.sh).

  python3 scripts/flag-watchers.py [watchers=2000] [flagged_per_second=150] [seconds=10]

Opens `watchers` streams (`GET /v1/collectors/u-w-N/flags:watch?after=now`, one collector
each, through ingest's API key `dev-key`), then posts flagged responses of the built-in form
for `seconds` at a fixed rate, each for one of the watched collectors in turn, and counts the
events the streams receive. It prints ingest's memory per open stream (VmRSS before and after
opening them) and its CPU per flagged response, read from /proc for the process listening on
:8080 (run it on the same machine as ingest; `ulimit -n` must allow the streams). Run it once
with 0 watchers for the CPU a flagged response costs without any. README, "Live flags", has
the figures.
"""
import json, http.client, os, random, socket, subprocess, sys, time

WATCHERS = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
RATE = float(sys.argv[2]) if len(sys.argv) > 2 else 150
SECONDS = float(sys.argv[3]) if len(sys.argv) > 3 else 10
H = {"Authorization": "Bearer dev-key", "Content-Type": "application/json"}


def ingest_pid():
    out = subprocess.run(["ss", "-Hltnp", "sport", "= :8080"], capture_output=True, text=True).stdout
    return int(out.split("pid=")[1].split(",")[0])


def status(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])  # kB


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


pid = ingest_pid()
rss_before = status(pid, "VmRSS")
streams = []
for i in range(WATCHERS):
    s = socket.create_connection(("127.0.0.1", 8080))
    s.sendall((f"GET /v1/collectors/u-w-{i}/flags:watch?after=now HTTP/1.1\r\nHost: ingest\r\n"
               "Authorization: Bearer dev-key\r\nAccept: text/event-stream\r\n\r\n").encode())
    streams.append(s)
opened = 0
for s in streams:
    s.settimeout(30)
    if s.recv(65536).startswith(b"HTTP/1.1 200"):
        opened += 1
    s.setblocking(False)
time.sleep(1)
rss_after = status(pid, "VmRSS")
print(f"streams open: {opened} of {WATCHERS}; ingest VmRSS {rss_before / 1024:.1f} -> {rss_after / 1024:.1f} MB"
      + (f" ({(rss_after - rss_before) / opened:.1f} KB a stream)" if opened else ""))

# Flagged responses (savings above income minus expenditure) at a fixed rate.
run = random.randint(0, 10**9)
connection = http.client.HTTPConnection("127.0.0.1", 8080)
cpu_start = cpu_seconds(pid)
started = time.time()
sent = refused = 0
while time.time() - started < SECONDS:
    delay = started + sent / RATE - time.time()
    if delay > 0:
        time.sleep(delay)
    user = f"u-w-{sent % WATCHERS}" if WATCHERS else "u-w-0"
    body = {"response_id": f"w-{run}-{sent}", "collector": {"user_id": user},
            "answers": {"monthly_income": 1000, "monthly_expenditure": 900, "monthly_savings": 500,
                        "food": 100, "cable": 100, "healthcare": 100, "fuel": 100}}
    connection.request("POST", "/v1/forms/household-finance/responses", json.dumps(body), H)
    response = connection.getresponse()
    response.read()
    sent += 1
    refused += response.status != 202
elapsed = time.time() - started


def received():
    count = 0
    for s in streams:
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    break
                count += data.count(b"event: flagged")
        except BlockingIOError:
            pass
    return count


events = received()
deadline = time.time() + 10
while WATCHERS and events < sent - refused and time.time() < deadline:
    time.sleep(0.2)
    events += received()
cpu = cpu_seconds(pid) - cpu_start
print(f"flagged responses: {sent} in {elapsed:.1f} s ({sent / elapsed:.0f}/s), {refused} refused; "
      f"events the streams received: {events}")
print(f"ingest CPU: {cpu:.2f} s, {cpu / max(sent, 1) * 1000:.2f} ms a flagged response "
      f"(its request, publish and event included)")
