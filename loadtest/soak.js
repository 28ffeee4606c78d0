// Soak load for loadtest/soak.sh: a constant arrival rate at one host, each request
// carrying the rate-limit key the soak's cluster-key-rate-limit counts in Redis.
// BASE_URL, HOST_HEADER, RATE (requests/s, default 200), DURATION (default 600s).
import http from 'k6/http';

const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:8080').replace(/\/$/, '');
const HOST = __ENV.HOST_HEADER || 'soak.test';
const RATE = parseInt(__ENV.RATE || '200', 10);

export const options = {
  scenarios: {
    steady: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: __ENV.DURATION || '600s',
      preAllocatedVUs: Math.max(10, Math.floor(RATE / 5)),
      maxVUs: Math.max(50, RATE),
    },
  },
  // soak_companion.py judges the run from the raw points; no threshold here.
  summaryTrendStats: ['avg', 'p(50)', 'p(99)', 'max'],
};

export default function () {
  http.get(`${BASE_URL}/soak`, { headers: { Host: HOST, 'x-key': 'k1' }, timeout: '10s' });
}
