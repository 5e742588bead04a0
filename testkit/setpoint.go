package testkit

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
)

var setpoint struct {
	once sync.Once
	path string
	err  error
}

// SetpointBinary builds the setpoint command once per test binary and
// returns its path: tests that run `setpoint run` as a user would (as
// separate processes, to SIGKILL them) use it. It is built with the test
// binary's race setting, so the packages compiled for the test are
// reused and only the link is new. Run removes it when the tests end.
func SetpointBinary() (string, error) {
	setpoint.once.Do(func() { setpoint.path, setpoint.err = buildSetpoint() })
	return setpoint.path, setpoint.err
}

func buildSetpoint() (string, error) {
	dir, err := os.MkdirTemp("", "setpoint-bin-")
	if err != nil {
		return "", err
	}
	// Readable by all: some tests run it as an ordinary user.
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "setpoint")
	args := []string{"build", "-o", path}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "github.com/setpoint-dev/setpoint/cmd/setpoint")...)
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build setpoint: %w\n%s", err, out)
	}
	return path, nil
}

// removeSetpoint removes the binary SetpointBinary built, if any.
func removeSetpoint() {
	if setpoint.path != "" {
		_ = os.RemoveAll(filepath.Dir(setpoint.path))
	}
}
