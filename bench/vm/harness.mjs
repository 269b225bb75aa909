// A proxy-wasm filter's own CPU in V8, without Envoy: node's V8 runs the
// .wasm, this file stands in for the host (answers in JavaScript, no I/O), and
// drives whole streaming calls through the ABI's callbacks, as Envoy would.
// What Envoy's host calls cost is not here (the A/B measures that); what the
// VM's own code costs is, and which host calls a call makes, by kind.
//
// node bench/vm/harness.mjs WASM CONFIG CALLS REQUEST_FILE RESPONSE_FILE PER_WRITE
//   streams RESPONSE_FILE (an SSE body, as the mock upstream wrote it: run.py
//   records it) PER_WRITE events a chunk, CALLS times, after the request body in
//   REQUEST_FILE; prints one JSON line: µs per call, host calls per call (and by kind).
// It is a measurement tool, not a test: nothing here checks streamtap.
import fs from "node:fs";

const [wasmPath, config, callsArg, requestPath, responsePath, perWriteArg] = process.argv.slice(2);
const CALLS = Number(callsArg);
const PER_WRITE = Number(perWriteArg);
if (!wasmPath || !config || !(CALLS > 0) || !requestPath || !responsePath || !(PER_WRITE > 0)) {
  console.error("usage: node harness.mjs WASM CONFIG_JSON CALLS REQUEST_FILE RESPONSE_FILE PER_WRITE");
  process.exit(2);
}

const utf8 = new TextEncoder();
const text = new TextDecoder();

// The proxy-wasm ABI's numbers (v0.2.1).
const OK = 0;
const NOT_FOUND = 1;
const EMPTY = 7;
const MAP = { requestHeaders: 0, responseHeaders: 2, httpCallResponseHeaders: 6 };
const BUFFER = { requestBody: 0, responseBody: 1, httpCallResponseBody: 4, vmConfig: 6, pluginConfig: 7 };
const ROOT = 1;
const TICK_EVERY_CALLS = 20;

// The response's events (each ends with its blank line), PER_WRITE a chunk.
const events = fs.readFileSync(responsePath, "utf8").split(/(?<=\n\n)/);
const chunks = [];
for (let i = 0; i < events.length; i += PER_WRITE) {
  chunks.push(utf8.encode(events.slice(i, i + PER_WRITE).join("")));
}
const requestBody = new Uint8Array(fs.readFileSync(requestPath));
const empty = new Uint8Array(0);

const maps = {
  [MAP.requestHeaders]: {
    ":method": "POST", ":path": "/v1/chat/completions", ":authority": "llm",
    "content-type": "application/json", "x-request-id": "0b9d5c1e-6a1f-4d2e-9a57-3f1c2b7d8e90",
  },
  [MAP.responseHeaders]: { ":status": "200", "content-type": "text/event-stream" },
  [MAP.httpCallResponseHeaders]: { ":status": "200" },
};
const buffers = {
  [BUFFER.pluginConfig]: utf8.encode(config),
  [BUFFER.vmConfig]: empty,
  [BUFFER.httpCallResponseBody]: utf8.encode('{"accepted":1}'),
};

let instance;
const bytes = () => new Uint8Array(instance.exports.memory.buffer);
const view = () => new DataView(instance.exports.memory.buffer);
const read = (ptr, len) => text.decode(bytes().subarray(ptr, ptr + len));
// Hands bytes to the VM the way hosts do: the VM allocates, the host copies.
function hand(data, ptrPtr, sizePtr) {
  const ptr = data.length ? instance.exports.proxy_on_memory_allocate(data.length) : 0;
  if (data.length) bytes().set(data, ptr);
  view().setUint32(ptrPtr, ptr, true);
  view().setUint32(sizePtr, data.length, true);
  return OK;
}

let clockNs = 1_764_000_000_000_000_000n;
const calls = {};
let counting = false;
const host = (kind, answer) => (...args) => {
  if (counting) calls[kind] = (calls[kind] || 0) + 1;
  return answer(...args);
};
let nextId = 1;
const httpCalls = [];

const env = {
  proxy_log: (level, ptr, len) => {
    if (level >= 3) console.error(`filter log (${level}): ${read(ptr, len)}`);
    return OK;
  },
  proxy_get_buffer_bytes: host("get_buffer", (type, start, max, ptrPtr, sizePtr) => {
    const buffer = buffers[type];
    if (!buffer) return NOT_FOUND;
    const from = start >>> 0; // usize::MAX arrives as -1
    return hand(buffer.subarray(from, from + (max >>> 0)), ptrPtr, sizePtr);
  }),
  proxy_get_header_map_value: host("get_header", (type, keyPtr, keyLen, ptrPtr, sizePtr) => {
    const value = maps[type]?.[read(keyPtr, keyLen)];
    return value === undefined ? NOT_FOUND : hand(utf8.encode(value), ptrPtr, sizePtr);
  }),
  proxy_get_current_time_nanoseconds: host("clock", (ptr) => {
    clockNs += 1_000_000n;
    view().setBigUint64(ptr, clockNs, true);
    return OK;
  }),
  proxy_define_metric: host("define_metric", (type, ptr, len, idPtr) => {
    view().setUint32(idPtr, nextId++, true);
    return OK;
  }),
  proxy_increment_metric: host("increment_metric", () => OK),
  proxy_record_metric: host("record_metric", () => OK),
  proxy_set_property: host("set_property", () => OK),
  proxy_get_property: host("get_property", () => NOT_FOUND),
  proxy_add_header_map_value: host("add_header", () => OK),
  proxy_get_shared_data: host("get_shared_data", () => NOT_FOUND),
  proxy_set_shared_data: host("set_shared_data", () => OK),
  proxy_http_call: host("http_call", (...args) => {
    const token = nextId++;
    httpCalls.push(token);
    view().setUint32(args[args.length - 1], token, true);
    return OK;
  }),
  proxy_set_tick_period_milliseconds: () => OK,
  proxy_get_header_map_pairs: () => NOT_FOUND,
  proxy_set_header_map_pairs: () => OK,
  proxy_replace_header_map_value: () => OK,
  proxy_remove_header_map_value: () => OK,
  proxy_set_buffer_bytes: () => OK,
  proxy_get_status: () => NOT_FOUND,
  proxy_continue_stream: () => OK,
  proxy_close_stream: () => OK,
  proxy_send_local_response: () => OK,
  proxy_set_effective_context: () => OK,
  proxy_done: () => OK,
  proxy_call_foreign_function: () => NOT_FOUND,
  proxy_register_shared_queue: (namePtr, nameLen, tokenPtr) => {
    view().setUint32(tokenPtr, nextId++, true);
    return OK;
  },
  proxy_resolve_shared_queue: () => NOT_FOUND,
  proxy_enqueue_shared_queue: () => OK,
  proxy_dequeue_shared_queue: () => EMPTY, // nothing handed over
  proxy_grpc_call: () => OK,
  proxy_grpc_stream: () => OK,
  proxy_grpc_send: () => OK,
  proxy_grpc_cancel: () => OK,
  proxy_grpc_close: () => OK,
};
const wasi = {
  random_get: (ptr, len) => {
    const memory = bytes();
    for (let i = 0; i < len; i++) memory[ptr + i] = (Math.random() * 256) | 0;
    return OK;
  },
  environ_get: () => OK,
  environ_sizes_get: (countPtr, sizePtr) => {
    view().setUint32(countPtr, 0, true);
    view().setUint32(sizePtr, 0, true);
    return OK;
  },
  fd_write: (fd, iovs, count, writtenPtr) => {
    view().setUint32(writtenPtr, 0, true);
    return OK;
  },
  proc_exit: (code) => {
    throw new Error(`the filter exited (${code})`);
  },
};

const module = new WebAssembly.Module(fs.readFileSync(wasmPath));
instance = new WebAssembly.Instance(module, { env, wasi_snapshot_preview1: wasi });
const vm = instance.exports;
vm._initialize?.();
vm.proxy_on_context_create(ROOT, 0);
vm.proxy_on_vm_start(ROOT, 0);
if (!vm.proxy_on_configure(ROOT, buffers[BUFFER.pluginConfig].length)) {
  console.error(`the filter refused its config: ${config}`);
  process.exit(1);
}

let context = ROOT + 1;
function oneCall() {
  const id = context++;
  vm.proxy_on_context_create(id, ROOT);
  vm.proxy_on_request_headers(id, 5, 0);
  buffers[BUFFER.requestBody] = requestBody;
  vm.proxy_on_request_body(id, requestBody.length, 1);
  vm.proxy_on_response_headers(id, 2, 0);
  for (const chunk of chunks) {
    buffers[BUFFER.responseBody] = chunk;
    vm.proxy_on_response_body(id, chunk.length, 0);
  }
  buffers[BUFFER.responseBody] = empty;
  vm.proxy_on_response_body(id, 0, 1);
  vm.proxy_on_log(id);
  vm.proxy_on_done(id);
  vm.proxy_on_delete(id);
  if (id % TICK_EVERY_CALLS === 0) {
    // The export's tick and the collector's answers, as a flush interval would.
    clockNs += 200_000_000n;
    vm.proxy_on_tick(ROOT);
    for (const token of httpCalls.splice(0)) {
      vm.proxy_on_http_call_response(ROOT, token, 1, buffers[BUFFER.httpCallResponseBody].length, 0);
    }
  }
}

// V8 compiles the module with TurboFan up front (as Envoy's does, Liftoff
// off); the warm-up fills the VM's heap and the filter's per-VM state.
for (let i = 0; i < Math.min(CALLS, 2000); i++) oneCall();
counting = true;
const start = process.hrtime.bigint();
for (let i = 0; i < CALLS; i++) oneCall();
const ns = Number(process.hrtime.bigint() - start);
const perCall = Object.fromEntries(Object.entries(calls).map(([kind, n]) => [kind, n / CALLS]));
console.log(JSON.stringify({
  calls: CALLS, events: events.length, per_write: PER_WRITE, us_per_call: ns / CALLS / 1000,
  host_calls_per_call: Object.values(perCall).reduce((a, b) => a + b, 0), host_calls: perCall,
}));
