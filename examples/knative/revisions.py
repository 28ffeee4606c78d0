#!/usr/bin/env python3
"""Two Knative revisions of `hello` on loopback, as helloworld-go answers: 127.0.0.1:9001
says "Hello World!" (hello-00001) and 127.0.0.1:9002 "Hello Knative!" (hello-00002)."""
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def revision(text):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = (text + "\n").encode()
            self.send_response(200)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return Handler


servers = [ThreadingHTTPServer(("127.0.0.1", 9001), revision("Hello World!")),
           ThreadingHTTPServer(("127.0.0.1", 9002), revision("Hello Knative!"))]
for s in servers[1:]:
    threading.Thread(target=s.serve_forever, daemon=True).start()
servers[0].serve_forever()
