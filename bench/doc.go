// Package bench holds Setpoint's end-to-end benchmarks. They run on a
// local control plane with kwok nodes and measure what an operator costs:
// time to converge, API writes (the operator's own, and all of the API
// server's by verb), CPU and peak memory of the operator process, and the
// writes of a pass over objects with nothing to do (which must be none).
//
// The operator runs as a separate process (bin/setpoint, built by
// `make build`), so its memory and CPU are its own. Results are printed
// and written as JSON under results/. `make bench` runs them; see
// docs/benchmarks.md.
package bench
