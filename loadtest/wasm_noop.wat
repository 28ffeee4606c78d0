;; The benchmark's gw-wasm0 plugin: the least a Proxy-Wasm plugin can do that still looks at
;; every request. It adds `x-bench-plugin: noop` to the request and to the response, as the
;; transformer row's config does, so gw-wasm0 is what the host itself costs per plugin and
;; gw-wasm what Higress's (Go) transformer adds on top.
(module
  (import "env" "proxy_add_header_map_value"
    (func $add_hdr (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (data (i32.const 0) "x-bench-plugin")   ;; 14 bytes
  (data (i32.const 16) "noop")            ;; 4 bytes
  (func (export "proxy_abi_version_0_2_1"))
  ;; The host hands nothing over on these paths; a bump allocator that resets per call is
  ;; enough (and never grows memory).
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (global.set $heap (i32.const 1024))
    (global.get $heap))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  ;; map type 0: request headers, 2: response headers.
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $add_hdr (i32.const 0) (i32.const 0) (i32.const 14) (i32.const 16) (i32.const 4)))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (drop (call $add_hdr (i32.const 2) (i32.const 0) (i32.const 14) (i32.const 16) (i32.const 4)))
    (i32.const 0))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32)))
