;; Asks for memory until it is refused: a memory bomb. Its memory has no maximum.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $more
      (drop (memory.grow (i32.const 16)))
      (br $more))))
