"""`make bench-vm`: streamtap's own CPU inside V8, beside the body-reading floor.

Runs bench/vm/harness.mjs (node's V8, the host stubbed in JavaScript) over
short calls (4 events, one a chunk: the cost per call) and long ones (400
events, ten a chunk: the cost per event), the bytes the mock upstream answers
the bench's request with (recorded from testbed's mock-upstream once, so the
wire format has one author), REPS times each, and prints medians
and ranges, the host calls a call makes by kind, and with --profile the
functions the VM's time goes to (node --cpu-prof on a build with names).
Writes bench/results/quick/vm.json.
"""

import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
HARNESS = os.path.join(HERE, "harness.mjs")
SHAPES = {"short": (20000, 4, 1), "long": (1000, 400, 10)}
# The bench's request (bench/src/loadgen.rs CHAT_BODY) and its events besides
# the tokens (NON_TOKEN_EVENTS: the role delta, the finish, the usage, [DONE]).
CHAT_PATH = "/v1/chat/completions"
CHAT_BODY = ('{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},'
             '"messages":[{"role":"user","content":"Say hello"}]}')
NON_TOKEN_EVENTS = 4


def record_streams(mock, folder):
    """Each shape's request and response body, as the mock upstream answers."""
    upstream = subprocess.Popen([mock, "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    try:
        # "mock-upstream listening on 127.0.0.1:PORT"
        host, port = upstream.stdout.readline().split()[-1].rsplit(":", 1)
        request = os.path.join(folder, "request.json")
        with open(request, "w") as f:
            f.write(CHAT_BODY)
        files = {}
        for shape, (_, events, _) in SHAPES.items():
            conn = http.client.HTTPConnection(host, int(port), timeout=30)
            conn.request("POST", CHAT_PATH, CHAT_BODY, {
                "content-type": "application/json", "x-mock-stamp": "1", "x-mock-interval-ms": "0",
                "x-mock-tokens": str(events - NON_TOKEN_EVENTS)})
            answer = conn.getresponse()
            body = answer.read()
            got = body.count(b"\n\n")
            if answer.status != 200 or got != events:
                sys.exit(f"the mock answered {answer.status} with {got} events, not {events}")
            files[shape] = (request, os.path.join(folder, f"{shape}.sse"))
            with open(files[shape][1], "wb") as f:
                f.write(body)
        return files
    finally:
        upstream.kill()


def run(node, wasm, config, shape, streams, extra=()):
    calls, _, per_write = SHAPES[shape]
    request, response = streams[shape]
    out = subprocess.run(
        [node, *extra, HARNESS, wasm, config, str(calls), request, response, str(per_write)],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def spread(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def measure(node, wasm, config, reps, streams):
    result = {}
    for shape, (_, events, _) in SHAPES.items():
        runs = [run(node, wasm, config, shape, streams) for _ in range(reps)]
        per = [r["us_per_call"] / (events if shape == "long" else 1) for r in runs]
        result[shape] = {"us": spread(per), "host_calls": runs[0]["host_calls"]}
    return result


def demangle(names):
    filt = shutil.which("c++filt")
    if not filt:
        return {n: n for n in names}
    out = subprocess.run([filt], input="\n".join(names), capture_output=True, text=True).stdout
    return {n: re.sub(r"::h[0-9a-f]{16}", "", d) for n, d in zip(names, out.split("\n"))}


def profile(node, wasm, config, streams, top):
    """Self time per function of a short-call run, the stub host as one line."""
    with tempfile.TemporaryDirectory() as folder:
        run(node, wasm, config, "short", streams, ("--cpu-prof", "--cpu-prof-interval", "50",
                                                   "--cpu-prof-dir", folder))
        [name] = os.listdir(folder)
        with open(os.path.join(folder, name)) as f:
            prof = json.load(f)
    nodes = {n["id"]: n["callFrame"] for n in prof["nodes"]}
    samples = Counter(prof["samples"])
    total = sum(samples.values())
    by = Counter()
    for node_id, count in samples.items():
        frame = nodes[node_id]
        # The VM's functions come from a wasm:// script; the rest is the stub
        # host in JavaScript, its builtins and node.
        wasm = frame.get("url", "").startswith("wasm://")
        by[frame["functionName"] if wasm else "(the stub host and node)"] += count
    names = demangle([n for n, _ in by.most_common(top)])
    return [{"share": c / total, "function": names[n]} for n, c in by.most_common(top)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--node", default="node")
    parser.add_argument("--mock", required=True, help="testbed's mock-upstream binary")
    parser.add_argument("--wasm", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--floor", required=True, help="the near-empty filter's .wasm")
    parser.add_argument("--floor-config", default='{"read_body":true}')
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--profile", help="a build of --wasm with its name section")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        streams = record_streams(args.mock, folder)
        st = measure(args.node, args.wasm, args.config, args.reps, streams)
        floor = measure(args.node, args.floor, args.floor_config, args.reps, streams)
        if args.profile:
            top = profile(args.node, args.profile, args.config, streams, 25)
    report = {"shapes": {k: {"calls": c, "events": e, "per_write": w} for k, (c, e, w) in SHAPES.items()},
              "streamtap": st, "reading_floor": floor,
              "above_floor": {"per_call_us": st["short"]["us"]["median"] - floor["short"]["us"]["median"],
                              "per_event_us": st["long"]["us"]["median"] - floor["long"]["us"]["median"]}}
    print(f"in node's V8 ({args.reps} runs each; median, min–max), the host stubbed in JavaScript:")
    for label, r in (("streamtap", st), ("reading floor", floor)):
        s, l = r["short"]["us"], r["long"]["us"]
        print(f"  {label:>13}: {s['median']:6.2f} µs a short call ({s['min']:.2f}–{s['max']:.2f}), "
              f"{l['median']:5.3f} µs an event of a long one ({l['min']:.3f}–{l['max']:.3f})")
    a = report["above_floor"]
    print(f"  streamtap above the floor: {a['per_call_us']:+.2f} µs a call, {a['per_event_us']:+.3f} µs an event")
    kinds = sorted(st["short"]["host_calls"].items(), key=lambda kv: -kv[1])
    print("  host calls a short call makes: "
          f"{sum(v for _, v in kinds):.1f} (floor {sum(floor['short']['host_calls'].values()):.1f}): "
          + ", ".join(f"{k} {v:g}" for k, v in kinds))
    if args.profile:
        report["profile"] = top
        print("  where a short call's time goes (self time, node --cpu-prof):")
        for row in report["profile"]:
            print(f"    {100 * row['share']:5.1f}%  {row['function'][:110]}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
