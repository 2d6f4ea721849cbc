;; Calls its descriptors with what a hostile or broken module would pass: buffers and
;; iovec arrays outside its memory, a count written outside it, too many iovecs, a
;; descriptor it does not have, stdin written and stdout read, a seek on a stream, a write
;; after closing stdout, stats of streams that are and are not there, misaligned. Exits
;; with the number of the first call whose error is not the one expected (10 to 24);
;; answers {"ok":true} when every one is.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_seek" (func $fd_seek (param i32 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_filestat_get" (func $fd_filestat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_fdstat_get" (func $fd_fdstat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1 1)
  ;; iovec at 0: 64 bytes from 65,520, past the end of the one page
  (data (i32.const 0) "\f0\ff\00\00\40\00\00\00")
  ;; iovec at 16: the 11 bytes of the answer at 64
  (data (i32.const 16) "\40\00\00\00\0b\00\00\00")
  (data (i32.const 64) "{\"ok\":true}")
  (func $expect (param $got i32) (param $want i32) (param $code i32)
    (if (i32.ne (local.get $got) (local.get $want)) (then (call $exit (local.get $code)))))
  (func (export "_start")
    ;; a buffer outside memory: fault (21), and nothing written or read
    (call $expect (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 32)) (i32.const 21) (i32.const 10))
    (call $expect (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 32)) (i32.const 21) (i32.const 11))
    ;; the iovec array itself running past memory
    (call $expect (call $fd_write (i32.const 1) (i32.const 65532) (i32.const 2) (i32.const 32)) (i32.const 21) (i32.const 12))
    ;; the count written past memory
    (call $expect (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 65534)) (i32.const 21) (i32.const 13))
    ;; more iovecs than one call takes: inval (28)
    (call $expect (call $fd_write (i32.const 1) (i32.const 16) (i32.const -1) (i32.const 32)) (i32.const 28) (i32.const 14))
    ;; no descriptor 3; stdin cannot be written, nor stdout read: badf (8)
    (call $expect (call $fd_write (i32.const 3) (i32.const 16) (i32.const 1) (i32.const 32)) (i32.const 8) (i32.const 15))
    (call $expect (call $fd_write (i32.const 0) (i32.const 16) (i32.const 1) (i32.const 32)) (i32.const 8) (i32.const 16))
    (call $expect (call $fd_read (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 32)) (i32.const 8) (i32.const 17))
    ;; a stream has no position: spipe (70)
    (call $expect (call $fd_seek (i32.const 1) (i64.const 0) (i32.const 0) (i32.const 32)) (i32.const 70) (i32.const 18))
    ;; a stream's stat is there, all zeros; descriptor 3's is not; a misaligned one: inval
    (call $expect (call $fd_filestat_get (i32.const 1) (i32.const 128)) (i32.const 0) (i32.const 22))
    (call $expect (call $fd_filestat_get (i32.const 3) (i32.const 128)) (i32.const 8) (i32.const 23))
    (call $expect (call $fd_fdstat_get (i32.const 1) (i32.const 130)) (i32.const 28) (i32.const 24))
    ;; the answer, 11 bytes written
    (call $expect (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 32)) (i32.const 0) (i32.const 19))
    (call $expect (i32.load (i32.const 32)) (i32.const 11) (i32.const 19))
    ;; stdout closed: a write is refused
    (call $expect (call $fd_close (i32.const 1)) (i32.const 0) (i32.const 20))
    (call $expect (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 32)) (i32.const 8) (i32.const 21))
  )
)
