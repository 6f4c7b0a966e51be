package queue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestAddDeduplicates(t *testing.T) {
	q := New(nil)
	for _, k := range []string{"a", "b", "a", "c", "b", "a"} {
		q.Add(k)
	}
	if got := q.Len(); got != 3 {
		t.Fatalf("Len = %d, want 3", got)
	}
	var order []string
	for range 3 {
		k, shutdown := q.Get()
		if shutdown {
			t.Fatal("unexpected shutdown")
		}
		order = append(order, k)
		q.Done(k)
	}
	if fmt.Sprint(order) != "[a b c]" {
		t.Fatalf("order = %v, want FIFO [a b c]", order)
	}
}

func TestKeyBeingProcessedIsNotHandedOutTwice(t *testing.T) {
	q := New(nil)
	q.Add("a")
	k, _ := q.Get()
	// Added again while a worker holds it: remembered, not queued.
	q.Add("a")
	q.Add("a")
	if q.Len() != 0 {
		t.Fatalf("key being processed was queued again: Len = %d", q.Len())
	}
	q.Done(k)
	if q.Len() != 1 {
		t.Fatalf("after Done, Len = %d, want 1 (the re-add)", q.Len())
	}
	k, _ = q.Get()
	q.Done(k)
	if q.Len() != 0 {
		t.Fatalf("Len = %d, want 0", q.Len())
	}
}

// TestNoConcurrentProcessing hammers the queue with workers and adders and
// checks that no key is ever held by two workers at once and that every
// key added is processed after its last add.
func TestNoConcurrentProcessing(t *testing.T) {
	q := New(nil)
	const keys, adds, workers = 20, 2000, 8
	var (
		mu        sync.Mutex
		holding   = map[string]bool{}
		lastAdd   = map[string]int{}
		lastStart = map[string]int{}
		clock     int
	)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				k, shutdown := q.Get()
				if shutdown {
					return
				}
				mu.Lock()
				if holding[k] {
					mu.Unlock()
					t.Errorf("key %s handed to two workers", k)
					q.Done(k)
					continue
				}
				holding[k] = true
				clock++
				lastStart[k] = clock
				mu.Unlock()
				time.Sleep(time.Microsecond)
				mu.Lock()
				holding[k] = false
				mu.Unlock()
				q.Done(k)
			}
		})
	}
	var adders sync.WaitGroup
	for a := range 4 {
		adders.Go(func() {
			for i := range adds {
				k := fmt.Sprintf("k%d", (i*7+a)%keys)
				mu.Lock()
				clock++
				lastAdd[k] = clock
				mu.Unlock()
				q.Add(k)
			}
		})
	}
	adders.Wait()
	q.ShutDownWithDrain()
	wg.Wait()
	for k, added := range lastAdd {
		if lastStart[k] < added {
			t.Errorf("key %s added at %d but last processed at %d", k, added, lastStart[k])
		}
	}
}

func TestAddAfter(t *testing.T) {
	q := New(nil)
	q.AddAfter("late", time.Hour)
	q.AddAfter("soon", 20*time.Millisecond)
	// An earlier delayed add of the same key wins.
	q.AddAfter("late", 30*time.Millisecond)
	// A later one does not postpone it.
	q.AddAfter("soon", time.Hour)
	if q.Len() != 0 {
		t.Fatalf("delayed keys ready at once: Len = %d", q.Len())
	}
	start := time.Now()
	got := map[string]bool{}
	for range 2 {
		k, _ := q.Get()
		got[k] = true
		q.Done(k)
	}
	if !got["late"] || !got["soon"] {
		t.Fatalf("got %v", got)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("delayed adds took %v", el)
	}
	q.AddAfter("now", 0)
	if q.Len() != 1 {
		t.Fatalf("AddAfter(0) did not add at once")
	}
}

func TestShutDownDrains(t *testing.T) {
	q := New(nil)
	q.Add("a")
	q.Add("b")
	q.AddAfter("delayed", time.Hour)
	q.ShutDown()
	q.Add("c") // ignored
	var got []string
	for {
		k, shutdown := q.Get()
		if shutdown {
			break
		}
		got = append(got, k)
		q.Done(k)
	}
	if fmt.Sprint(got) != "[a b]" {
		t.Fatalf("drained %v, want [a b]", got)
	}
	if !q.ShuttingDown() {
		t.Fatal("ShuttingDown = false")
	}
}

func TestShutDownWakesBlockedGet(t *testing.T) {
	q := New(nil)
	done := make(chan bool)
	go func() {
		_, shutdown := q.Get()
		done <- shutdown
	}()
	time.Sleep(10 * time.Millisecond)
	q.ShutDown()
	select {
	case shutdown := <-done:
		if !shutdown {
			t.Fatal("Get returned a key from an empty queue")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Get still blocked after ShutDown")
	}
}

func TestShutDownWithDrainWaitsForDone(t *testing.T) {
	q := New(nil)
	q.Add("a")
	k, _ := q.Get()
	var finished atomic.Bool
	go func() {
		time.Sleep(20 * time.Millisecond)
		finished.Store(true)
		q.Done(k)
	}()
	q.ShutDownWithDrain()
	if !finished.Load() {
		t.Fatal("ShutDownWithDrain returned before the key was Done")
	}
}

func TestExponentialRateLimiter(t *testing.T) {
	tests := []struct {
		name      string
		limiter   RateLimiter
		failures  int
		wantLast  time.Duration
		wantCount int
	}{
		{"default first", DefaultRateLimiter(), 1, 5 * time.Millisecond, 1},
		{"default doubles", DefaultRateLimiter(), 4, 40 * time.Millisecond, 4},
		{"default capped", DefaultRateLimiter(), 30, 1000 * time.Second, 30},
		{"default no overflow", DefaultRateLimiter(), 200, 1000 * time.Second, 200},
		{"slow first", SlowRateLimiter(), 1, time.Second, 1},
		{"slow capped", SlowRateLimiter(), 10, 5 * time.Minute, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d time.Duration
			for range tt.failures {
				d = tt.limiter.When("k")
			}
			if d != tt.wantLast {
				t.Errorf("delay after %d failures = %v, want %v", tt.failures, d, tt.wantLast)
			}
			if n := tt.limiter.NumRequeues("k"); n != tt.wantCount {
				t.Errorf("NumRequeues = %d, want %d", n, tt.wantCount)
			}
			if n := tt.limiter.NumRequeues("other"); n != 0 {
				t.Errorf("other key has %d requeues", n)
			}
			tt.limiter.Forget("k")
			if d := tt.limiter.When("k"); d != tt.limiter.(*ExponentialRateLimiter).base {
				t.Errorf("after Forget, delay = %v, want base", d)
			}
		})
	}
}

func TestAddRateLimitedAndForget(t *testing.T) {
	q := New(NewExponentialRateLimiter(time.Millisecond, 10*time.Millisecond))
	for range 3 {
		q.AddRateLimited("k")
		k, _ := q.Get()
		q.Done(k)
	}
	if n := q.NumRequeues("k"); n != 3 {
		t.Fatalf("NumRequeues = %d, want 3", n)
	}
	q.Forget("k")
	if n := q.NumRequeues("k"); n != 0 {
		t.Fatalf("NumRequeues after Forget = %d", n)
	}
}

func TestRunWorkers(t *testing.T) {
	q := New(NewExponentialRateLimiter(time.Millisecond, 5*time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	var (
		mu       sync.Mutex
		attempts = map[string]int{}
	)
	done := make(chan struct{})
	var once sync.Once
	reconcile := func(_ context.Context, key string) error {
		mu.Lock()
		defer mu.Unlock()
		attempts[key]++
		switch {
		case key == "flaky" && attempts[key] < 3:
			return errors.New("transient")
		case key == "wait" && attempts[key] == 1:
			return RequeueAfter(5 * time.Millisecond)
		}
		if attempts["flaky"] >= 3 && attempts["wait"] >= 2 && attempts["ok"] >= 1 {
			once.Do(func() { close(done) })
		}
		return nil
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	finished := make(chan struct{})
	go func() {
		RunWorkers(ctx, q, 3, log, reconcile)
		close(finished)
	}()
	q.Add("ok")
	q.Add("flaky")
	q.Add("wait")
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		mu.Lock()
		t.Fatalf("keys not reconciled: %v", attempts)
	}
	cancel()
	select {
	case <-finished:
	case <-time.After(10 * time.Second):
		t.Fatal("RunWorkers did not return after cancel")
	}
	if n := q.NumRequeues("flaky"); n != 0 {
		t.Errorf("back-off not reset after success: %d", n)
	}
	if !q.ShuttingDown() {
		t.Fatal("queue not shut down")
	}
}

// TestRunWorkersConcurrency: at most n keys are reconciled at once, n are
// when that many are ready, and the ones after them wait in the queue.
func TestRunWorkersConcurrency(t *testing.T) {
	const n = 3
	q := New(NewExponentialRateLimiter(time.Millisecond, 5*time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var running, most atomic.Int32
	release := make(chan struct{})
	var reconciled atomic.Int32
	reconcile := func(_ context.Context, key string) error {
		r := running.Add(1)
		for m := most.Load(); r > m && !most.CompareAndSwap(m, r); m = most.Load() {
		}
		<-release
		running.Add(-1)
		reconciled.Add(1)
		return nil
	}
	finished := make(chan struct{})
	go func() {
		RunWorkers(ctx, q, n, slog.New(slog.DiscardHandler), reconcile)
		close(finished)
	}()
	for i := range 2 * n {
		q.Add(fmt.Sprint("key-", i))
	}
	deadline := time.Now().Add(10 * time.Second)
	for running.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d reconciles running, want %d", running.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
	if got := q.Len(); got != n {
		t.Errorf("queue holds %d keys while %d workers are busy, want %d", got, n, n)
	}
	close(release)
	for reconciled.Load() < 2*n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d keys reconciled", reconciled.Load(), 2*n)
		}
		time.Sleep(time.Millisecond)
	}
	if m := most.Load(); m != n {
		t.Errorf("at most %d reconciles ran at once, want %d", m, n)
	}
	cancel()
	<-finished
}
