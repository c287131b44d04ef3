#!/usr/bin/env python3
"""Posts large responses to a running pipeline (scripts/run-local.sh), to see memory under them.

  python3 scripts/large-responses.py [questions=40] [characters=4000] [seconds=20] [connections=32]

Puts a form `big` of `questions` text questions (one rule), then `connections` connections post
responses whose every answer is `characters` long (every 7th has an empty first answer, so it
is flagged) for `seconds`, through ingest's API key `dev-key`. It prints how many were
accepted; read each service's peak RSS from /proc/<pid>/status (VmHWM). README, "Memory with
large responses", has the figures.
"""
import json, http.client, threading, time, sys, random
N_Q = int(sys.argv[1]) if len(sys.argv) > 1 else 40
CHARS = int(sys.argv[2]) if len(sys.argv) > 2 else 4000
SECONDS = float(sys.argv[3]) if len(sys.argv) > 3 else 20
THREADS = int(sys.argv[4]) if len(sys.argv) > 4 else 32
H = {"Authorization": "Bearer dev-key", "Content-Type": "application/json"}
form = {"title": "Big", "questions": [{"id": f"q{i}", "label": f"Question {i}", "type": "string"} for i in range(N_Q)],
        "rules": [{"id": "r", "expression": "q0 != ''", "message": "q0 empty"}]}
c = http.client.HTTPConnection("127.0.0.1", 8080)
c.request("PUT", "/v1/forms/big", json.dumps(form), H); r = c.getresponse(); print("form", r.status, r.read()[:100])
text = "x" * CHARS
run = str(random.randint(0, 10**9))
count = [0]; errors = [0]; lock = threading.Lock()
deadline = time.time() + SECONDS
def worker(t):
    c = http.client.HTTPConnection("127.0.0.1", 8080)
    n = 0
    while time.time() < deadline:
        body = json.dumps({"response_id": f"b-{run}-{t}-{n}", "collector": {"user_id": "u-1"},
                           "answers": {f"q{i}": ("" if (n % 7 == 0 and i == 0) else text) for i in range(N_Q)}})
        n += 1
        c.request("POST", "/v1/forms/big/responses", body, H)
        r = c.getresponse(); r.read()
        with lock:
            if r.status == 202: count[0] += 1
            else: errors[0] += 1
ts = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
[t.start() for t in ts]; [t.join() for t in ts]
print("accepted", count[0], "errors", errors[0], "bytes each ~", len(text) * N_Q)
