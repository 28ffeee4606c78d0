// Tracing test: requests carrying sw8, b3 and traceparent headers; the echo upstream
// (`gateway demo`, or any httpbin-like upstream that returns the headers it got as JSON)
// shows what the gateway propagated, and each check compares trace ids.
//
//   (from the repository root)
//   k6 run ./loadtest/tracing.js                         # gateway demo (W3C propagation)
//   PROVIDER=zipkin k6 run ./loadtest/tracing.js         # higress-config tracing.zipkin
//   PROVIDER=skywalking k6 run ./loadtest/tracing.js     # higress-config tracing.skywalking
//
// BASE_URL (default http://localhost:8080), HOST_HEADER (default foo.bar.com), URL_PATH
// (default /get), PROVIDER (opentelemetry, the default and what the demo propagates;
// zipkin; skywalking), DURATION (default 10s). Sampling must be 100 for the checks.
import http from 'k6/http';
import encoding from 'k6/encoding';
import { check, sleep } from 'k6';

const BASE_URL = (__ENV.BASE_URL || 'http://localhost:8080').replace(/\/$/, '');
const HOST = __ENV.HOST_HEADER || 'foo.bar.com';
const PATH = __ENV.URL_PATH || '/get';
const PROVIDER = __ENV.PROVIDER || 'opentelemetry';

export const options = {
  vus: 1,
  duration: __ENV.DURATION || '10s',
  thresholds: { checks: ['rate==1'], http_req_failed: ['rate==0'] },
};

function hex(n) {
  let s = '';
  for (let i = 0; i < n; i++) s += '0123456789abcdef'[Math.floor(Math.random() * 16)];
  return s.replace(/^0+$/, '1');
}

// The header `name` the upstream saw (echoes differ in how they case names).
function seen(res, name) {
  let body;
  try {
    body = res.json();
  } catch (e) {
    return undefined;
  }
  const headers = body.headers || {};
  for (const k of Object.keys(headers)) {
    if (k.toLowerCase() === name) return headers[k];
  }
  return undefined;
}

function send(headers, tag) {
  headers.Host = HOST;
  return http.get(`${BASE_URL}${PATH}?k6=tracing`, { headers, tags: { carrier: tag } });
}

export default function () {
  // W3C: the trace id goes on, the parent becomes the gateway's client span.
  const tid = hex(32);
  const parent = hex(16);
  let r = send({ traceparent: `00-${tid}-${parent}-01` }, 'traceparent');
  check(r, { 'traceparent: 200': (res) => res.status === 200 });
  if (PROVIDER === 'opentelemetry') {
    const tp = seen(r, 'traceparent') || '';
    check(tp, {
      'traceparent: same trace id upstream': (v) => v.split('-')[1] === tid,
      'traceparent: new parent span id': (v) => v.split('-')[2] !== parent,
    });
  } else if (PROVIDER === 'zipkin') {
    check(r, { 'traceparent -> x-b3-traceid': (res) => seen(res, 'x-b3-traceid') === tid });
  }

  // B3 single header.
  const b3tid = hex(32);
  r = send({ b3: `${b3tid}-${hex(16)}-1` }, 'b3');
  check(r, { 'b3: 200': (res) => res.status === 200 });
  if (PROVIDER === 'zipkin') {
    check(r, { 'b3: same trace id upstream': (res) => seen(res, 'x-b3-traceid') === b3tid });
  } else if (PROVIDER === 'opentelemetry') {
    check(r, {
      'b3 -> traceparent with its trace id': (res) =>
        (seen(res, 'traceparent') || '').split('-')[1] === b3tid,
    });
  }

  // SkyWalking sw8: sample-traceId-segmentId-spanId-service-instance-endpoint-target.
  const swTrace = `${hex(8)}.${hex(4)}.${hex(8)}`;
  const sw8 = [
    '1',
    encoding.b64encode(swTrace),
    encoding.b64encode(`${hex(8)}.${hex(4)}`),
    '0',
    encoding.b64encode('k6'),
    encoding.b64encode('k6-instance'),
    encoding.b64encode(PATH),
    encoding.b64encode(HOST),
  ].join('-');
  r = send({ sw8 }, 'sw8');
  check(r, { 'sw8: 200': (res) => res.status === 200 });
  if (PROVIDER === 'skywalking') {
    check(r, {
      'sw8: same trace id upstream': (res) => {
        const v = seen(res, 'sw8') || '';
        const parts = v.split('-');
        return parts.length === 8 && encoding.b64decode(parts[1], 'std', 's') === swTrace;
      },
    });
  } else {
    // Other providers do not read sw8: the request starts a trace of its own.
    const name = PROVIDER === 'zipkin' ? 'x-b3-traceid' : 'traceparent';
    check(r, { 'sw8 ignored: a new trace upstream': (res) => seen(res, name) !== undefined });
  }
  sleep(0.1);
}
