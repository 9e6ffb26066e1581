#!/usr/bin/env node
// An HTTP client instrumented by OpenTelemetry's own Node.js SDK, for
// tests/integration/otel_node_spec.lua: npm @opentelemetry/sdk-trace-node with
// @opentelemetry/instrumentation-http (versions pinned by the spec, installed at test time into a
// directory outside the tree, given as NODE_PATH or the first argument). The instrumentation
// makes a CLIENT span for each request and injects its W3C traceparent, exactly as an
// instrumented service calling beagle would.
//
// usage: node client.js MODULES_DIR URL [URL...]: one GET per URL, in order, each inside a root
// span "otel-client" of its own. Prints one JSON line per request: {"url", "status",
// "traceparent" (the response's header, or null), "client" ({traceId, spanId, parentSpanId, kind,
// name} of the instrumentation's CLIENT span), "root" (the same of the root span)}.
"use strict";
const path = require("path");
const Module = require("module");

const [modules, ...urls] = process.argv.slice(2);
if (!modules || urls.length === 0) {
  console.error("usage: node client.js MODULES_DIR URL [URL...]");
  process.exit(2);
}
// the SDK is resolved from MODULES_DIR (the spec's npm --prefix), not from the tree
process.env.NODE_PATH = path.join(modules, "node_modules");
Module._initPaths();

const api = require("@opentelemetry/api");
const { NodeTracerProvider } = require("@opentelemetry/sdk-trace-node");
const { InMemorySpanExporter, SimpleSpanProcessor } = require("@opentelemetry/sdk-trace-base");
const { registerInstrumentations } = require("@opentelemetry/instrumentation");
const { HttpInstrumentation } = require("@opentelemetry/instrumentation-http");

const exporter = new InMemorySpanExporter();
const provider = new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
provider.register(); // the W3C trace context propagator and the async-hooks context manager
registerInstrumentations({ instrumentations: [new HttpInstrumentation()] });
// after the instrumentation: it patches the module as it is loaded
const http = require("http");

const tracer = api.trace.getTracer("beagle-otel-test");

function view(s) {
  const c = s.spanContext();
  return { traceId: c.traceId, spanId: c.spanId, parentSpanId: s.parentSpanId || null,
    kind: s.kind, name: s.name };
}

function get(url) {
  return new Promise((resolve, reject) => {
    tracer.startActiveSpan("otel-client", (root) => {
      const req = http.get(url, (res) => {
        res.resume();
        res.on("end", () => {
          root.end();
          resolve({ status: res.statusCode, traceparent: res.headers.traceparent || null,
            rootId: root.spanContext().spanId });
        });
      });
      req.on("error", (e) => {
        root.end();
        reject(e);
      });
    });
  });
}

(async () => {
  for (const url of urls) {
    const r = await get(url);
    const spans = exporter.getFinishedSpans();
    const root = spans.find((s) => s.spanContext().spanId === r.rootId);
    const client = spans.find((s) => s.kind === api.SpanKind.CLIENT && s.parentSpanId === r.rootId);
    console.log(JSON.stringify({ url, status: r.status, traceparent: r.traceparent,
      client: client ? view(client) : null, root: root ? view(root) : null }));
  }
  await provider.shutdown();
})().catch((e) => {
  console.error(e && e.stack || String(e));
  process.exit(1);
});
