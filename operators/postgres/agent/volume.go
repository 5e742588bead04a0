package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// minFree is the space below which a data volume counts as full: two WAL
// segments. PostgreSQL stops (PANIC) when it cannot make the next one,
// and cannot start again until there is room.
const minFree = 32 << 20

// volumeFree is the space left to an unprivileged writer on the
// filesystem of dir (the data directory, or the volume above it before
// the data exists).
func volumeFree(dir string) (uint64, error) {
	for ; ; dir = filepath.Dir(dir) {
		var st syscall.Statfs_t
		err := syscall.Statfs(dir, &st)
		if err == nil {
			return st.Bavail * uint64(st.Bsize), nil
		}
		if !os.IsNotExist(err) || dir == filepath.Dir(dir) {
			return 0, fmt.Errorf("statfs %s: %w", dir, err)
		}
	}
}

// checkMajor refuses data of another PostgreSQL major version than the
// binaries (a new image of another major): such data needs pg_upgrade,
// and postgres itself would only say the files are incompatible.
func checkMajor(pgVersion []byte, binMajor int) error {
	data, err := strconv.Atoi(strings.TrimSpace(string(pgVersion)))
	if err != nil || binMajor == 0 || data == binMajor {
		return nil
	}
	return fmt.Errorf("the data directory is PostgreSQL %d and this image runs PostgreSQL %d: a major upgrade needs pg_upgrade, which the agent does not do; set spec.imageName back to a PostgreSQL %d image", data, binMajor, data)
}

// compatible: the data directory, if there is one, is of the binaries'
// major version.
func (s *server) compatible() error {
	b, err := os.ReadFile(filepath.Join(s.data, "PG_VERSION"))
	if err != nil {
		return nil
	}
	return checkMajor(b, major(s.bin))
}
