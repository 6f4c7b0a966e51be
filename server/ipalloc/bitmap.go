// Package ipalloc hands out Service cluster IPs from the service CIDR and
// node ports from the node port range, as the Kubernetes API server does.
//
// Each range is a bitmap kept in memory: one bit per address or port, so a
// /16 costs 8 KiB. Nothing is persisted here; the Services stored in the
// store are the truth, and Services.Restore rebuilds the bitmaps from them
// when the server starts. The Services type plugs into the services entry
// of the resource table through its BeginCreate, BeginUpdate and
// AfterDelete hooks; it never reads or writes the store itself.
package ipalloc

import (
	"math/bits"
	"math/rand/v2"
	"sync"
)

// bitmap is a goroutine-safe set of small integers [0, size).
//
// Dynamic allocation (next) follows Kubernetes' "random scan with offset"
// strategy: it starts at a random point in the upper part [offset, size)
// and scans upward, wrapping around, and only takes from the lower part
// [0, offset) when the upper part is full. The random start keeps a value
// that was just released from being handed out again at once (clients and
// caches may still use it), and keeping the lower band for last leaves the
// well-known addresses (10.43.0.1 for kubernetes, 10.43.0.10 for DNS) to
// the clients that ask for them explicitly.
type bitmap struct {
	mu     sync.Mutex
	words  []uint64
	size   int
	offset int
	used   int
	intn   func(n int) int // random source; rand.IntN unless a test sets it
}

func newBitmap(size, offset int) *bitmap {
	if offset >= size {
		offset = 0
	}
	return &bitmap{
		words:  make([]uint64, (size+63)/64),
		size:   size,
		offset: offset,
		intn:   rand.IntN,
	}
}

func (b *bitmap) isSet(i int) bool { return b.words[i/64]&(1<<(i%64)) != 0 }

// set marks i as used; it returns false when i was used already.
func (b *bitmap) set(i int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.isSet(i) {
		return false
	}
	b.words[i/64] |= 1 << (i % 64)
	b.used++
	return true
}

// clear marks i as free; it returns false when i was free already.
func (b *bitmap) clear(i int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.isSet(i) {
		return false
	}
	b.words[i/64] &^= 1 << (i % 64)
	b.used--
	return true
}

func (b *bitmap) has(i int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.isSet(i)
}

func (b *bitmap) free() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.size - b.used
}

// next marks a free value as used and returns it; false when full.
func (b *bitmap) next() (int, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used >= b.size {
		return 0, false
	}
	i, ok := b.scan(b.offset, b.size)
	if !ok {
		i, ok = b.scan(0, b.offset)
	}
	if !ok {
		return 0, false // unreachable while used is accurate
	}
	b.words[i/64] |= 1 << (i % 64)
	b.used++
	return i, true
}

// scan finds a free value in [lo, hi), starting at a random point and
// wrapping around.
func (b *bitmap) scan(lo, hi int) (int, bool) {
	if hi <= lo {
		return 0, false
	}
	start := lo + b.intn(hi-lo)
	if i, ok := b.firstFree(start, hi); ok {
		return i, true
	}
	return b.firstFree(lo, start)
}

// firstFree returns the lowest free value in [from, to), a word at a time.
func (b *bitmap) firstFree(from, to int) (int, bool) {
	for from < to {
		w := from / 64
		// Treat bits below from as used so they are skipped.
		free := ^b.words[w] &^ (1<<(from%64) - 1)
		if free != 0 {
			i := w*64 + bits.TrailingZeros64(free)
			if i < to {
				return i, true
			}
			return 0, false
		}
		from = (w + 1) * 64
	}
	return 0, false
}
