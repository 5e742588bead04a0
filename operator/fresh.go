package operator

import (
	"math"
	"strconv"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// freshness remembers the resourceVersion of our own last write to each
// object, so a pass never acts on a cached copy from before that write.
// Without it, a pass triggered by someone else's event, arriving between
// our write and its watch event, would see no progress and no diff base
// and run finished handlers again.
//
// resourceVersions are compared as numbers: they are etcd revisions, which
// only grow. One that does not parse is never "behind". A remembered
// write is forgotten after a while, so a lost watch event cannot stall an
// object for good.
type freshness struct {
	mu      sync.Mutex
	written map[types.UID]writeMark
}

type writeMark struct {
	rv uint64
	at time.Time
}

const freshnessWindow = 10 * time.Second

func (f *freshness) wrote(uid types.UID, rv string) {
	n, err := strconv.ParseUint(rv, 10, 64)
	if err != nil {
		return
	}
	f.mark(uid, n)
}

// released records that our write let the object go (its last finalizer):
// every copy still in the cache is stale. Kept for the whole window, also
// past the object's delete event, since a pass may already be under way
// with an old copy.
func (f *freshness) released(uid types.UID) { f.mark(uid, math.MaxUint64) }

func (f *freshness) mark(uid types.UID, rv uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.written == nil {
		f.written = map[types.UID]writeMark{}
	}
	now := time.Now()
	if len(f.written) > 1024 {
		// Marks of objects that are gone are never checked again.
		for k, m := range f.written {
			if now.Sub(m.at) > freshnessWindow {
				delete(f.written, k)
			}
		}
	}
	f.written[uid] = writeMark{rv: rv, at: now}
}

// behind reports whether a copy at rv predates our last write.
func (f *freshness) behind(uid types.UID, rv string) bool {
	n, err := strconv.ParseUint(rv, 10, 64)
	if err != nil {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	m, ok := f.written[uid]
	if !ok {
		return false
	}
	if n >= m.rv || time.Since(m.at) > freshnessWindow {
		delete(f.written, uid)
		return false
	}
	return true
}
