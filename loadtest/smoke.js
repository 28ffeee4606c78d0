// Smoke test: a few virtual users for a short while; every response must come from the
// gateway (200 with `x-envoy-upstream-service-time`) and p99 must stay low.
//
//   (from the repository root)
//   k6 run ./loadtest/smoke.js
//   BASE_URL=http://127.0.0.1:8080 HOST_HEADER=foo.bar.com DURATION=10s k6 run ./loadtest/smoke.js
//
// BASE_URL (default http://localhost:8080), HOST_HEADER (default foo.bar.com, the demo's
// domain), PATHS (comma-separated, default /get), DURATION (default 10s), VUS (default 2).
import http from 'k6/http';
import { check, sleep } from 'k6';

const BASE_URL = (__ENV.BASE_URL || 'http://localhost:8080').replace(/\/$/, '');
const HOST = __ENV.HOST_HEADER || 'foo.bar.com';
const PATHS = (__ENV.PATHS || '/get').split(',').filter((p) => p.length > 0);

export const options = {
  vus: parseInt(__ENV.VUS || '2', 10),
  duration: __ENV.DURATION || '10s',
  thresholds: {
    checks: ['rate==1'],
    http_req_failed: ['rate==0'],
    http_req_duration: ['p(99)<500'],
  },
};

export default function () {
  for (const path of PATHS) {
    const r = http.get(`${BASE_URL}${path}${path.includes('?') ? '&' : '?'}k6=smoke`, {
      headers: { Host: HOST },
      tags: { route: path },
    });
    check(r, {
      'status is 200': (res) => res.status === 200,
      'served through the gateway': (res) =>
        res.headers['X-Envoy-Upstream-Service-Time'] !== undefined,
    });
  }
  sleep(0.05);
}
