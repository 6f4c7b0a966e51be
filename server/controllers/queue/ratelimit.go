package queue

import (
	"sync"
	"time"
)

// RateLimiter decides how long a failed key waits before it is retried.
type RateLimiter interface {
	// When returns the delay before key's next retry and counts a failure.
	When(key string) time.Duration
	// Forget clears key's failures.
	Forget(key string)
	// NumRequeues is the number of failures counted for key.
	NumRequeues(key string) int
}

// DefaultRateLimiter is client-go's default per-key back-off: 5 ms,
// doubling on each failure, capped at 1000 s.
func DefaultRateLimiter() RateLimiter {
	return NewExponentialRateLimiter(5*time.Millisecond, 1000*time.Second)
}

// SlowRateLimiter backs off from 1 s to 5 min, for controllers whose
// failures are usually waits on something external (a node, a finalizer).
func SlowRateLimiter() RateLimiter {
	return NewExponentialRateLimiter(time.Second, 5*time.Minute)
}

// ExponentialRateLimiter delays a key's n-th consecutive failure by
// base·2ⁿ⁻¹, capped at max.
type ExponentialRateLimiter struct {
	base, max time.Duration

	mu       sync.Mutex
	failures map[string]int
}

var _ RateLimiter = (*ExponentialRateLimiter)(nil)

// NewExponentialRateLimiter returns a limiter starting at base and capped
// at max.
func NewExponentialRateLimiter(base, max time.Duration) *ExponentialRateLimiter {
	return &ExponentialRateLimiter{base: base, max: max, failures: map[string]int{}}
}

// When implements RateLimiter.
func (r *ExponentialRateLimiter) When(key string) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.failures[key]
	r.failures[key] = n + 1
	// Past 2^62 the shift overflows; the cap has long been reached.
	if n >= 62 {
		return r.max
	}
	d := r.base << uint(n)
	if d <= 0 || d > r.max || d>>uint(n) != r.base {
		return r.max
	}
	return d
}

// Forget implements RateLimiter.
func (r *ExponentialRateLimiter) Forget(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.failures, key)
}

// NumRequeues implements RateLimiter.
func (r *ExponentialRateLimiter) NumRequeues(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failures[key]
}
