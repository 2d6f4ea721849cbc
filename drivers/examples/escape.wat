;; Looks for a way out: a preopened directory (fds 3 to 15), an environment, a file
;; opened relative to fd 3, a connection accepted on fd 3. Exits with 1 when every way
;; is shut, or with the number of the first that is open (2 to 5).
(module
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $fd_prestat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_accept" (func $sock_accept (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "etc/passwd")
  (func (export "_start")
    (local $fd i32)
    (local.set $fd (i32.const 3))
    (block $none
      (loop $next
        (br_if $none (i32.ge_u (local.get $fd) (i32.const 16)))
        (if (i32.eqz (call $fd_prestat_get (local.get $fd) (i32.const 300)))
          (then (call $proc_exit (i32.const 2))))
        (local.set $fd (i32.add (local.get $fd) (i32.const 1)))
        (br $next)))
    (drop (call $environ_sizes_get (i32.const 400) (i32.const 404)))
    (if (i32.load (i32.const 400)) (then (call $proc_exit (i32.const 3))))
    (if (i32.eqz
          (call $path_open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 10)
            (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 200)))
      (then (call $proc_exit (i32.const 4))))
    (if (i32.eqz (call $sock_accept (i32.const 3) (i32.const 0) (i32.const 204)))
      (then (call $proc_exit (i32.const 5))))
    (call $proc_exit (i32.const 1))))
