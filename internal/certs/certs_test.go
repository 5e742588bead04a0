package certs

import (
	"net"
	"testing"
	"time"
)

func TestCovers(t *testing.T) {
	now := time.Now()
	ca, err := NewCA("test-ca", now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewCA("other-ca", now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Sign(Leaf{CommonName: "hook", DNSNames: []string{"hook.ns.svc"}, IPs: []net.IP{net.ParseIP("127.0.0.1")}}, now, 12*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		ca    []byte
		hosts []string
		until time.Time
		want  bool
	}{
		{"dns name", ca.CertPEM, []string{"hook.ns.svc"}, now, true},
		{"ip and dns", ca.CertPEM, []string{"127.0.0.1", "hook.ns.svc"}, now, true},
		{"host not named", ca.CertPEM, []string{"other.ns.svc"}, now, false},
		{"another CA", other.CertPEM, []string{"hook.ns.svc"}, now, false},
		{"expires before", ca.CertPEM, []string{"hook.ns.svc"}, now.Add(13 * time.Hour), false},
		{"no CA", nil, []string{"hook.ns.svc"}, now, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Covers(tc.ca, leaf.CertPEM, tc.hosts, tc.until); got != tc.want {
				t.Errorf("Covers = %v, want %v", got, tc.want)
			}
		})
	}
}
