// Reload test: constant load while loadtest/reload_companion.py rewrites higress-config
// and an Ingress of the config directory again and again. Not one request may fail:
// changes apply without dropping a connection or a request.
//
//   python3 loadtest/reload_companion.py CONFIG_DIR --for 40 &   # or: loadtest/reload.sh
//   (from the repository root)
//   k6 run ./loadtest/reload.js
//
// BASE_URL (default http://localhost:8080), HOST_HEADER (default foo.bar.com), RATE
// (requests per second, default 100), DURATION (default 30s), URL_PATH (default /get).
import http from 'k6/http';
import { check } from 'k6';

const BASE_URL = (__ENV.BASE_URL || 'http://localhost:8080').replace(/\/$/, '');
const HOST = __ENV.HOST_HEADER || 'foo.bar.com';
const PATH = __ENV.URL_PATH || '/get';
const RATE = parseInt(__ENV.RATE || '100', 10);

export const options = {
  scenarios: {
    steady: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: __ENV.DURATION || '30s',
      preAllocatedVUs: Math.max(10, Math.floor(RATE / 5)),
      maxVUs: Math.max(50, RATE),
    },
  },
  thresholds: {
    http_req_failed: ['rate==0'],
    checks: ['rate==1'],
    dropped_iterations: ['count==0'],
  },
};

export default function () {
  const r = http.get(`${BASE_URL}${PATH}?k6=reload`, { headers: { Host: HOST } });
  check(r, { 'status is 200': (res) => res.status === 200 });
}
