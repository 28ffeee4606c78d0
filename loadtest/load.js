// Load test: a ramping arrival rate (requests per second, whatever the latency) over a set
// of routes, each tagged, with thresholds per route.
//
//   (from the repository root)
//   k6 run ./loadtest/load.js
//   RATE=500 DURATION=2m ROUTES=/get,/anything/a,/status/200 k6 run ./loadtest/load.js
//
// BASE_URL (default http://localhost:8080), HOST_HEADER (default foo.bar.com), ROUTES
// (comma-separated paths; default /get,/anything/load,/headers), RATE (peak requests per
// second, default 200), DURATION (time at the peak, default 30s), P99_MS (default 1000).
import http from 'k6/http';
import { check } from 'k6';

const BASE_URL = (__ENV.BASE_URL || 'http://localhost:8080').replace(/\/$/, '');
const HOST = __ENV.HOST_HEADER || 'foo.bar.com';
const ROUTES = (__ENV.ROUTES || '/get,/anything/load,/headers').split(',').filter((p) => p);
const RATE = parseInt(__ENV.RATE || '200', 10);
const DURATION = __ENV.DURATION || '30s';
const P99 = parseInt(__ENV.P99_MS || '1000', 10);

const thresholds = { http_req_failed: ['rate<0.01'], checks: ['rate>0.99'] };
for (const route of ROUTES) {
  thresholds[`http_req_duration{route:${route}}`] = [`p(99)<${P99}`];
}

export const options = {
  scenarios: {
    ramp: {
      executor: 'ramping-arrival-rate',
      startRate: Math.max(1, Math.floor(RATE / 10)),
      timeUnit: '1s',
      preAllocatedVUs: Math.max(10, Math.floor(RATE / 10)),
      maxVUs: Math.max(50, RATE),
      stages: [
        { target: RATE, duration: '10s' },
        { target: RATE, duration: DURATION },
        { target: 0, duration: '5s' },
      ],
    },
  },
  thresholds,
};

let i = 0;
export default function () {
  const route = ROUTES[i++ % ROUTES.length];
  const r = http.get(`${BASE_URL}${route}`, { headers: { Host: HOST }, tags: { route } });
  check(r, { 'status is 200': (res) => res.status === 200 }, { route });
}
