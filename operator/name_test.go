package operator

import (
	"strings"
	"testing"

	"k8s.io/client-go/rest"
)

func TestNewRefusesNamesThatCannotLabel(t *testing.T) {
	for _, tc := range []struct {
		name, want string
	}{
		{strings.Repeat("a", 64), "no more than 63"},
		{"Setpoint", "lowercase"},
		{"my operator", "alphanumeric"},
	} {
		_, err := New(&rest.Config{Host: "https://127.0.0.1:1"}, Options{Name: tc.name})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "managed-by") {
			t.Errorf("New(%q): %v, want an error saying %q and why", tc.name, err, tc.want)
		}
	}
	if err := validName(strings.Repeat("a", 63)); err != nil {
		t.Errorf("63 characters: %v", err)
	}
}
