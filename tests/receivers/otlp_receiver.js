#!/usr/bin/env node
// An OTLP/HTTP metrics receiver for the otlp_metrics backend's integration test
// (tests/integration/backend_otlp_spec.lua). Each body is read with OpenTelemetry's own schema:
// the protobufjs root generated from the OTLP protos that npm @opentelemetry/otlp-transformer
// ships (build/src/generated/root.js). The JSON must survive
//   ExportMetricsServiceRequest.fromObject (the protobuf JSON mapping: int64 as strings, enums
//   as numbers) -> verify -> toObject (longs as strings, enums as numbers)
// unchanged, except for fields left at their default: so an unknown or misspelt field, an
// int64 written as a number, a double written as a string or an enum by name is an error.
//
// usage: node otlp_receiver.js OUT ROOT_JS. Listens on 127.0.0.1 (a free port, printed on the
// first line). POST /v1/metrics is answered 200 {} (or a partialSuccess, or another status, as
// POST /_control {"status", "retry_after", "rejected", "message"} says) and appended to OUT as
// one JSON line: {"time" (epoch seconds of its arrival), "status", "path", "content_type", "encoding", "error" (why the body is not a
// valid request, or null), "body" (the JSON as received)}.
"use strict";
const http = require("http");
const fs = require("fs");
const zlib = require("zlib");

const [out, rootPath] = process.argv.slice(2);
const root = require(rootPath);
const Req = root.opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest;
const state = { status: 200, retry_after: null, rejected: 0, message: "" };

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

function check(doc) {
  let msg;
  try {
    msg = Req.fromObject(doc);
  } catch (e) {
    return `fromObject: ${e.message}`;
  }
  const v = Req.verify(msg);
  if (v) return `verify: ${v}`;
  const back = Req.toObject(msg, { longs: String, enums: Number, bytes: String, defaults: false });
  const full = Req.toObject(msg, { longs: String, enums: Number, bytes: String, defaults: true, arrays: true });
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
      encoding: req.headers["content-encoding"] || null, error: null, body: null };
    try {
      if (rec.encoding === "gzip") raw = zlib.gunzipSync(raw);
      rec.body = JSON.parse(raw.toString("utf8"));
      rec.error = check(rec.body);
    } catch (e) {
      rec.error = `unreadable body: ${e.message}`;
    }
    if (!rec.error && req.url !== "/v1/metrics") rec.error = "wrong path";
    if (!rec.error && rec.content_type !== "application/json") rec.error = "Content-Type is not application/json";
    let status = state.status;
    if (rec.error && status < 300) status = 400;
    rec.status = status;
    fs.appendFileSync(out, JSON.stringify(rec) + "\n");
    const headers = status >= 400 && state.retry_after !== null ? { "Retry-After": String(state.retry_after) } : {};
    if (status >= 300) return answer(res, status, { code: 3, message: rec.error || "refused" }, headers);
    if (state.rejected > 0) {
      return answer(res, status, { partialSuccess: { rejectedDataPoints: String(state.rejected), errorMessage: state.message } }, {});
    }
    answer(res, status, {}, {});
  });
}).listen(0, "127.0.0.1", function () {
  console.log(this.address().port);
});
