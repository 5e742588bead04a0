package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/setpoint-dev/setpoint/operator"
)

type logFlags struct {
	level  string
	format string
}

func (f *logFlags) register(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&f.level, "log-level", "info", "log level: debug, info, warn or error")
	cmd.PersistentFlags().StringVar(&f.format, "log-format", "text", "log format: text or json")
}

// setup routes controller-runtime's and client-go's logs through one slog
// handler on stderr, so the operator's output has one format. client-go's
// are capped below the verbosity where it logs request bodies
// (operator.CappedLogger), so --log-level=debug-10 logs no Secret.
func (f *logFlags) setup() error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.level)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", f.level)
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch f.format {
	case "text":
		h = slog.NewTextHandler(os.Stderr, opts)
	case "json":
		h = slog.NewJSONHandler(os.Stderr, opts)
	default:
		return fmt.Errorf("--log-format %q: want text or json", f.format)
	}
	logger := logr.FromSlogHandler(h)
	logger = operator.CappedLogger(logger)
	ctrl.SetLogger(logger)
	klog.SetLogger(logger)
	return nil
}
