;; Tries to open a file and to accept a connection: exits with 1 when both are refused,
;; 0 if either worked.
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_accept" (func $sock_accept (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "/etc/passwd")
  (func (export "_start")
    (local $open i32)
    (local $accept i32)
    (local.set $open
      (call $path_open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 11)
        (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 200)))
    (local.set $accept (call $sock_accept (i32.const 3) (i32.const 0) (i32.const 204)))
    (if (i32.or (i32.eqz (local.get $open)) (i32.eqz (local.get $accept)))
      (then (call $proc_exit (i32.const 0))))
    (call $proc_exit (i32.const 1))))
