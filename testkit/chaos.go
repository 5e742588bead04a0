package testkit

import (
	"fmt"
	"testing"
	"time"
)

// ChaosRow is one line of make chaos's table: a fault, how often it was
// injected, how many times the system came through it, what was lost,
// duplicated or left stuck, and how long it took to converge again.
type ChaosRow struct {
	Fault      string
	Injected   int
	Survived   int
	Lost       int
	Duplicated int
	Stuck      int
	Reconverge []time.Duration
}

// ChaosPrefix starts the log line of a ChaosRow; make chaos collects
// these lines into its table.
const ChaosPrefix = "CHAOS|"

// ReportChaos logs r as a line make chaos puts in its table.
func ReportChaos(t testing.TB, r ChaosRow) {
	t.Helper()
	t.Logf("%s%s|%d|%d|%d|%d|%d|%s|%s", ChaosPrefix, r.Fault, r.Injected, r.Survived, r.Lost, r.Duplicated, r.Stuck,
		round(Percentile(r.Reconverge, 0.5)), round(Percentile(r.Reconverge, 0.99)))
}

func round(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprint(d.Round(10 * time.Millisecond))
}
