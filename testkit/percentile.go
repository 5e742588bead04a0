package testkit

import (
	"math"
	"slices"
	"time"
)

// Percentile is the p-th (0..1] nearest-rank percentile of ds (of 20
// values, p 0.95 is the 19th smallest); 0 when there are none. It sorts
// ds.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[max(int(math.Ceil(p*float64(len(ds))))-1, 0)]
}
