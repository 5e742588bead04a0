package agent

import (
	"strings"
	"testing"
)

func TestCheckMajor(t *testing.T) {
	for _, tc := range []struct {
		pgVersion string
		bin       int
		want      string
	}{
		{"15\n", 15, ""},
		{"15\n", 16, "the data directory is PostgreSQL 15 and this image runs PostgreSQL 16"},
		{"16\n", 15, "set spec.imageName back to a PostgreSQL 16 image"},
		{"15\n", 0, ""}, // binaries outside /usr/lib/postgresql/<major>: postgres says it
		{"garbage", 15, ""},
	} {
		err := checkMajor([]byte(tc.pgVersion), tc.bin)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("data %q, binaries %d: %v, want %q", tc.pgVersion, tc.bin, err, tc.want)
		}
	}
}

// volumeFree measures the filesystem of the nearest existing directory.
func TestVolumeFree(t *testing.T) {
	dir := t.TempDir()
	free, err := volumeFree(dir + "/pgdata/not/yet")
	if err != nil || free == 0 {
		t.Fatalf("free %d, %v", free, err)
	}
}
