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
	// swept is when expired marks were last dropped.
	swept time.Time
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
	if m, ok := f.written[uid]; ok && m.rv > rv && now.Sub(m.at) <= freshnessWindow {
		// An older write whose answer came in after a newer one's (two
		// writers of one object: a pass's bookkeeping, a daemon's
		// status): the newer mark stands, or a copy between the two
		// would pass for fresh.
		return
	}
	if len(f.written) > 1024 && now.Sub(f.swept) > time.Second {
		// Marks stay for the window (see behind), and those of objects
		// that are gone are never checked again: drop the expired ones,
		// at most once a second.
		for k, m := range f.written {
			if now.Sub(m.at) > freshnessWindow {
				delete(f.written, k)
			}
		}
		f.swept = now
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
	if time.Since(m.at) > freshnessWindow {
		delete(f.written, uid)
		return false
	}
	// The mark stays when a copy is up to date: the kind's caches (the
	// dispatcher's, Get's) may not be at the same point, and a reader of
	// one that is must not clear it for a reader of one that is not.
	return n < m.rv
}
