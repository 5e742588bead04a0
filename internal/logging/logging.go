package logging

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/go-logr/logr"
	"github.com/spf13/pflag"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// MaxVerbosity is the most verbose line Cap lets through. From verbosity
// 6 on, client-go's transport logs request URLs, then headers and, at 8,
// whole request and response bodies.
const MaxVerbosity = 5

// Cap is log with lines above most dropped, whatever log's level.
func Cap(log logr.Logger, most int) logr.Logger {
	if s, ok := log.GetSink().(cappedSink); ok && s.most <= most {
		return log
	}
	return logr.New(cappedSink{log.GetSink(), most})
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

// Flags are a binary's log flags.
type Flags struct {
	Level  string
	Format string
}

// Register adds --log-level and --log-format to fs.
func (f *Flags) Register(fs *pflag.FlagSet) {
	fs.StringVar(&f.Level, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&f.Format, "log-format", "text", "log format: text or json")
}

// Setup routes controller-runtime's and client-go's logs through one slog
// handler on stderr, so a binary's output has one format, capped at
// MaxVerbosity so that --log-level=debug-10 logs no Secret.
func (f *Flags) Setup() error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.Level)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", f.Level)
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch f.Format {
	case "text":
		h = slog.NewTextHandler(os.Stderr, opts)
	case "json":
		h = slog.NewJSONHandler(os.Stderr, opts)
	default:
		return fmt.Errorf("--log-format %q: want text or json", f.Format)
	}
	logger := Cap(logr.FromSlogHandler(h), MaxVerbosity)
	ctrllog.SetLogger(logger)
	klog.SetLogger(logger)
	return nil
}
