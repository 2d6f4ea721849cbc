;; Never ends: only fuel, or the wall-time watchdog, stops it.
(module
  (func (export "_start")
    (loop $forever (br $forever))))
