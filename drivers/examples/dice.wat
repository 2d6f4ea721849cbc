;; Answers a JSON string of 48 hex digits: 8 random bytes, then the wall clock's and the
;; monotonic clock's 8 bytes each.
;; What it sees is virtual and recorded, so a replay answers the same.
(module
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "0123456789abcdef")
  (func (export "_start")
    (local $i i32)
    (local $b i32)
    (drop (call $random_get (i32.const 200) (i32.const 8)))
    (drop (call $clock (i32.const 0) (i64.const 1) (i32.const 208)))
    (drop (call $clock (i32.const 1) (i64.const 1) (i32.const 216)))
    (i32.store8 (i32.const 300) (i32.const 34))
    (block $done
      (loop $hex
        (br_if $done (i32.ge_u (local.get $i) (i32.const 24)))
        (local.set $b (i32.load8_u (i32.add (i32.const 200) (local.get $i))))
        (i32.store8 (i32.add (i32.const 301) (i32.shl (local.get $i) (i32.const 1)))
          (i32.load8_u (i32.add (i32.const 100) (i32.shr_u (local.get $b) (i32.const 4)))))
        (i32.store8 (i32.add (i32.const 302) (i32.shl (local.get $i) (i32.const 1)))
          (i32.load8_u (i32.add (i32.const 100) (i32.and (local.get $b) (i32.const 15)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $hex)))
    (i32.store8 (i32.const 349) (i32.const 34))
    (i32.store (i32.const 0) (i32.const 300))
    (i32.store (i32.const 4) (i32.const 50))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
