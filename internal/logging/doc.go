// Package logging is the log set-up Setpoint's binaries share: the
// --log-level and --log-format flags, one slog handler on stderr for
// controller-runtime's and client-go's logs, and the cap on verbosity that
// keeps client-go's request bodies (Secrets among them) out of any log. It
// is separate from the operator library so that the PostgreSQL agent, a
// small binary of its own, gets it without the library.
package logging
