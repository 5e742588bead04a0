package operator

import "github.com/go-logr/logr"

// MaxLogVerbosity is the most verbose log line CappedLogger lets
// through. From verbosity 6 on, client-go's transport logs request URLs,
// then headers and, at 8, whole request and response bodies: the Secrets
// an operator reads among them. It logs through klog's global logger and
// through the logger in each request's context, which is the
// operator's.
const MaxLogVerbosity = 5

// CappedLogger is log with lines above MaxLogVerbosity dropped, whatever
// log's level, so no verbosity a user can set puts Secret data in the
// logs. New caps Options.Logger with it; a binary also gives it to
// klog.SetLogger and ctrl.SetLogger.
func CappedLogger(log logr.Logger) logr.Logger {
	if s, ok := log.GetSink().(cappedSink); ok && s.most <= MaxLogVerbosity {
		return log
	}
	return logr.New(cappedSink{log.GetSink(), MaxLogVerbosity})
}

// cappedSink drops lines above a verbosity.
type cappedSink struct {
	logr.LogSink
	most int
}

func (s cappedSink) Enabled(level int) bool {
	return level <= s.most && s.LogSink.Enabled(level)
}

func (s cappedSink) Info(level int, msg string, kv ...any) {
	if level <= s.most {
		s.LogSink.Info(level, msg, kv...)
	}
}

func (s cappedSink) WithValues(kv ...any) logr.LogSink {
	return cappedSink{s.LogSink.WithValues(kv...), s.most}
}

func (s cappedSink) WithName(name string) logr.LogSink {
	return cappedSink{s.LogSink.WithName(name), s.most}
}
