package logging

import (
	"strings"
	"testing"

	"github.com/go-logr/logr/funcr"
)

func TestCapDropsClientGoBodies(t *testing.T) {
	var lines []string
	log := funcr.New(func(_, args string) { lines = append(lines, args) }, funcr.Options{Verbosity: 10})
	capped := Cap(log, MaxVerbosity)
	capped.V(MaxVerbosity).Info("url")
	capped.V(8).Info("body")
	capped.WithName("x").WithValues("k", "v").V(9).Info("body")
	if len(lines) != 1 || !strings.Contains(lines[0], `"url"`) {
		t.Fatalf("logged %q, want the verbosity-%d line only", lines, MaxVerbosity)
	}
	if capped.V(6).Enabled() {
		t.Error("V(6) enabled")
	}
	if again := Cap(capped, MaxVerbosity); again.GetSink() != capped.GetSink() {
		t.Error("capping twice wraps twice")
	}
}

func TestFlagsRefuseUnknownValues(t *testing.T) {
	for _, tc := range []struct {
		f    Flags
		want string
	}{
		{Flags{Level: "loud", Format: "text"}, `--log-level "loud"`},
		{Flags{Level: "info", Format: "xml"}, `--log-format "xml"`},
		{Flags{Level: "debug", Format: "json"}, ""},
	} {
		err := tc.f.Setup()
		if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: got %v, want %q", tc.f, err, tc.want)
		}
	}
}
