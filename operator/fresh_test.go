package operator

import "testing"

// Marks only move forward: a write answered after a newer one's must not
// make a copy older than the newer write pass for fresh.
func TestFreshnessKeepsTheNewestWrite(t *testing.T) {
	var f freshness
	f.wrote("u", "200")
	f.wrote("u", "150")
	if !f.behind("u", "180") {
		t.Errorf("a copy at 180 passed for fresh after writes at 200 and then 150")
	}
	if f.behind("u", "200") {
		t.Errorf("a copy at 200 is behind")
	}
	// One reader up to date does not make another's older copy fresh
	// (the kind's caches need not be at the same point).
	if !f.behind("u", "190") {
		t.Errorf("a copy at 190 passed for fresh once another reader had seen 200")
	}
	f.released("u")
	if !f.behind("u", "300") {
		t.Errorf("a copy after the release is not behind")
	}
}
