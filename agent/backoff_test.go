package agent

import (
	"testing"
	"time"
)

func TestBackOff(t *testing.T) {
	b := newBackOff(10*time.Second, 40*time.Second)
	t0 := time.Unix(1000, 0)
	const key = "uid/c"

	// The first failure is retried at once.
	if in, _ := b.inBackOffSince(key, t0, t0); in {
		t.Fatal("first failure must not back off")
	}
	steps := []struct {
		failedAt time.Duration // offset of the failure
		check    time.Duration // when the retry is attempted
		wantIn   bool
		wantNext time.Duration
	}{
		{failedAt: 0, check: 0, wantIn: false, wantNext: 10 * time.Second},
		{failedAt: 1 * time.Second, check: 5 * time.Second, wantIn: true},
		{failedAt: 1 * time.Second, check: 11 * time.Second, wantIn: false, wantNext: 20 * time.Second},
		{failedAt: 12 * time.Second, check: 31 * time.Second, wantIn: true},
		{failedAt: 12 * time.Second, check: 32 * time.Second, wantIn: false, wantNext: 40 * time.Second},
		{failedAt: 33 * time.Second, check: 73 * time.Second, wantIn: false, wantNext: 40 * time.Second}, // capped
	}
	for i, s := range steps {
		failed, now := t0.Add(s.failedAt), t0.Add(s.check)
		in, left := b.inBackOffSince(key, failed, now)
		if in != s.wantIn {
			t.Fatalf("step %d: inBackOff = %v (left %v), want %v", i, in, left, s.wantIn)
		}
		if !in {
			if got := b.next(key, failed, now); got != s.wantNext {
				t.Fatalf("step %d: next = %v, want %v", i, got, s.wantNext)
			}
		}
	}
	// Quiet for more than 2×max: starts over at the initial delay.
	late := t0.Add(33*time.Second + 81*time.Second)
	if in, _ := b.inBackOffSince(key, late, late); in {
		t.Fatal("expired entry must not back off")
	}
	if got := b.next(key, late, late); got != 10*time.Second {
		t.Fatalf("after expiry next = %v, want 10s", got)
	}
	b.forget("uid/")
	if d := b.delay(key); d != 0 {
		t.Fatalf("forgotten key still has delay %v", d)
	}
}
