#!/usr/bin/env node
// An OTLP/HTTP JSON receiver for the OTLP backends' integration tests
// (tests/integration/backend_otlp_spec.lua: metrics; backend_otlp_traces_spec.lua and
// backend_logfire_spec.lua: traces and logs). Each body is read with OpenTelemetry's own schema:
// the protobufjs root generated from the OTLP protos that npm @opentelemetry/otlp-transformer
// ships (build/src/generated/root.js). The JSON must survive
//   Export{Metrics,Trace,Logs}ServiceRequest.fromObject (the protobuf JSON mapping: int64 as
//   strings, enums as numbers) -> verify -> toObject (longs as strings, enums as numbers, NaN
//   and infinities as the mapping's strings)
// unchanged, except for fields left at their default: so an unknown or misspelt field, an
// int64 written as a number, a double written as a string or an enum by name is an error.
// OTLP's one departure from the mapping is kept: trace and span ids are lower-case hex (not
// base64); the receiver checks them (32 or 16 hex digits) and hands the schema their bytes.
// Span.flags and Span.Link.flags (fixed32, added to OTLP after the protos of 0.57.2, the last
// version that ships the root) are checked to be integers of 32 bits and set aside, so the
// older schema does not refuse them.
//
// usage: node otlp_receiver.js OUT ROOT_JS. Listens on 127.0.0.1 (a free port, printed on the
// first line). POST /v1/metrics, /v1/traces and /v1/logs are answered 200 {} (or a
// partialSuccess, or another status, as POST /_control {"status", "retry_after", "rejected",
// "message", "delay_ms"} says) and appended to OUT as one JSON line: {"time" (epoch seconds of
// its arrival), "status", "path", "content_type", "encoding", "authorization", "error" (why the
// body is not a valid request, or null), "body" (the JSON as received)}.
"use strict";
const http = require("http");
const fs = require("fs");
const zlib = require("zlib");

const [out, rootPath] = process.argv.slice(2);
const root = require(rootPath);
const C = root.opentelemetry.proto.collector;
const REQS = {
  "/v1/metrics": { Req: C.metrics.v1.ExportMetricsServiceRequest, rejected: "rejectedDataPoints" },
  "/v1/traces": { Req: C.trace.v1.ExportTraceServiceRequest, rejected: "rejectedSpans" },
  "/v1/logs": { Req: C.logs.v1.ExportLogsServiceRequest, rejected: "rejectedLogRecords" },
};
const state = { status: 200, retry_after: null, rejected: 0, message: "", delay_ms: 0 };

const HEX = { traceId: 32, spanId: 16, parentSpanId: 16 };

// Every id of the items (spans, their links, log records) from hex to base64 (to = "b64") or
// back (to = "hex"), in place; the first id that is not lower-case hex of its length throws.
function ids(doc, to) {
  const fix = (o, where) => {
    for (const k of Object.keys(HEX)) {
      if (!(k in o)) continue;
      const v = o[k];
      if (to === "b64") {
        if (typeof v !== "string" || !new RegExp(`^[0-9a-f]{${HEX[k]}}$`).test(v)) {
          throw new Error(`${where}.${k}: not ${HEX[k]} lower-case hex digits: ${JSON.stringify(v)}`);
        }
        o[k] = Buffer.from(v, "hex").toString("base64");
      } else {
        o[k] = Buffer.from(v, "base64").toString("hex");
      }
    }
  };
  const flags = (o, where) => {
    if (!("flags" in o)) return;
    const f = o.flags;
    if (typeof f !== "number" || !Number.isInteger(f) || f < 0 || f > 0xffffffff) {
      throw new Error(`${where}.flags: not a fixed32: ${JSON.stringify(f)}`);
    }
    delete o.flags;
  };
  (doc.resourceSpans || []).forEach((rs, i) => (rs.scopeSpans || []).forEach((ss, j) => (ss.spans || []).forEach((sp, k) => {
    const where = `body.resourceSpans[${i}].scopeSpans[${j}].spans[${k}]`;
    fix(sp, where);
    if (to === "b64") flags(sp, where);
    (sp.links || []).forEach((l, n) => {
      fix(l, `${where}.links[${n}]`);
      if (to === "b64") flags(l, `${where}.links[${n}]`);
    });
  })));
  (doc.resourceLogs || []).forEach((rl, i) => (rl.scopeLogs || []).forEach((sl, j) => (sl.logRecords || []).forEach((r, k) => {
    fix(r, `body.resourceLogs[${i}].scopeLogs[${j}].logRecords[${k}]`);
  })));
}

function isDefault(v) {
  return (Array.isArray(v) && v.length === 0) || v === "" || v === 0 || v === false || v === "0";
}

// a (as received) and b (after the round trip) are the same, but for defaults left out of b;
// full is the round trip with every field of the schema, to tell a default from an unknown key
function diff(a, b, full, path) {
  if (Array.isArray(a)) {
    if (!Array.isArray(b)) return b === undefined && a.length === 0 ? null : `${path}: not a list after the round trip`;
    if (a.length !== b.length) return `${path}: ${a.length} items became ${b.length}`;
    for (let i = 0; i < a.length; i++) {
      const d = diff(a[i], b[i], full[i], `${path}[${i}]`);
      if (d) return d;
    }
    return null;
  }
  if (a !== null && typeof a === "object") {
    if (b === null || typeof b !== "object") return `${path}: an object became ${JSON.stringify(b)}`;
    for (const k of Object.keys(a)) {
      if (!(k in full)) return `${path}.${k}: not a field of the schema`;
      if (!(k in b)) {
        if (isDefault(a[k])) continue;
        return `${path}.${k}: of the wrong type: ${JSON.stringify(a[k])}`;
      }
      const d = diff(a[k], b[k], full[k], `${path}.${k}`);
      if (d) return d;
    }
    for (const k of Object.keys(b)) if (!(k in a)) return `${path}.${k}: appeared in the round trip`;
    return null;
  }
  return a === b ? null : `${path}: ${JSON.stringify(a)} became ${JSON.stringify(b)}`;
}

function check(Req, received) {
  // the schema reads ids as base64 bytes; flags are set aside (see the top)
  const doc = JSON.parse(JSON.stringify(received));
  try {
    ids(doc, "b64");
  } catch (e) {
    return e.message;
  }
  let msg;
  try {
    msg = Req.fromObject(doc);
  } catch (e) {
    return `fromObject: ${e.message}`;
  }
  const v = Req.verify(msg);
  if (v) return `verify: ${v}`;
  const back = Req.toObject(msg, { longs: String, enums: Number, bytes: String, defaults: false, json: true });
  const full = Req.toObject(msg, { longs: String, enums: Number, bytes: String, defaults: true, arrays: true, json: true });
  ids(doc, "hex");
  ids(back, "hex");
  return diff(doc, back, full, "body");
}

function answer(res, status, body, headers) {
  const data = JSON.stringify(body);
  res.writeHead(status, Object.assign({ "Content-Type": "application/json", "Content-Length": Buffer.byteLength(data) }, headers));
  res.end(data);
}

http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    let raw = Buffer.concat(chunks);
    if (req.url === "/_control") {
      Object.assign(state, JSON.parse(raw.toString("utf8")));
      return answer(res, 200, state, {});
    }
    const rec = { time: Date.now() / 1000, path: req.url, content_type: req.headers["content-type"] || null,
      encoding: req.headers["content-encoding"] || null, authorization: req.headers.authorization || null,
      error: null, body: null };
    const kind = REQS[req.url];
    try {
      if (rec.encoding === "gzip") raw = zlib.gunzipSync(raw);
      rec.body = JSON.parse(raw.toString("utf8"));
      rec.error = kind ? check(kind.Req, rec.body) : "wrong path";
    } catch (e) {
      rec.error = `unreadable body: ${e.message}`;
    }
    if (!rec.error && rec.content_type !== "application/json") rec.error = "Content-Type is not application/json";
    let status = state.status;
    if (rec.error && status < 300) status = 400;
    rec.status = status;
    fs.appendFileSync(out, JSON.stringify(rec) + "\n");
    const headers = status >= 400 && state.retry_after !== null ? { "Retry-After": String(state.retry_after) } : {};
    const reply = () => {
      if (status >= 300) return answer(res, status, { code: 3, message: rec.error || "refused" }, headers);
      if (state.rejected > 0 && kind) {
        return answer(res, status, { partialSuccess: { [kind.rejected]: String(state.rejected), errorMessage: state.message } }, {});
      }
      answer(res, status, {}, {});
    };
    if (state.delay_ms > 0) setTimeout(reply, state.delay_ms);
    else reply();
  });
}).on("connect", (req, socket) => {
  // an HTTPS request through this receiver as its proxy (https_proxy): where it was going is
  // recorded, and no tunnel is opened, so nothing reaches that host
  fs.appendFileSync(out, JSON.stringify({ time: Date.now() / 1000, path: null, connect: req.url, status: 403,
    error: null, body: null }) + "\n");
  socket.end("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
}).listen(0, "127.0.0.1", function () {
  console.log(this.address().port);
});
