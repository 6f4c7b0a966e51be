package scheduler

import (
	"testing"
	"time"
)

func newTestQueue() *schedulingQueue {
	return newSchedulingQueue(time.Now, 20*time.Millisecond, 80*time.Millisecond, time.Hour)
}

func (q *schedulingQueue) stateOf(key string) (queueState, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	e, ok := q.entries[key]
	if !ok {
		return 0, false
	}
	return e.state, true
}

func waitState(t *testing.T, q *schedulingQueue, key string, want queueState) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if st, ok := q.stateOf(key); ok && st == want {
			return
		}
		if time.Now().After(deadline) {
			st, ok := q.stateOf(key)
			t.Fatalf("%s: state %v (known %v), want %v", key, st, ok, want)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestQueueOrdersByPriorityThenArrival(t *testing.T) {
	q := newTestQueue()
	q.Add("a", 0, false, false)
	q.Add("b", 10, false, false)
	q.Add("c", 0, false, false)
	q.Add("a", 0, false, false) // duplicate
	var got []string
	for range 3 {
		key, _, ok := q.Pop()
		if !ok {
			t.Fatal("queue closed")
		}
		got = append(got, key)
	}
	if want := []string{"b", "a", "c"}; got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Errorf("order = %v, want %v", got, want)
	}
	if q.Len() != 3 {
		t.Errorf("Len = %d, want 3 in flight", q.Len())
	}
}

func TestQueueUnschedulableWaitsForAMove(t *testing.T) {
	tests := []struct {
		name     string
		affinity bool
		move     func(q *schedulingQueue)
		want     queueState
	}{
		{"no event", false, func(*schedulingQueue) {}, stateUnschedulable},
		{"node event", false, (*schedulingQueue).MoveAll, stateActive},
		{"pod placed, no affinity", false, (*schedulingQueue).MoveAffinity, stateUnschedulable},
		{"pod placed, affinity", true, (*schedulingQueue).MoveAffinity, stateActive},
		{"pod changed", false, func(q *schedulingQueue) { q.Add("p", 0, false, true) }, stateActive},
		{"pod status written", false, func(q *schedulingQueue) { q.Add("p", 0, false, false) }, stateUnschedulable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := newTestQueue()
			defer q.Close()
			q.Add("p", 0, tc.affinity, false)
			_, cycle, _ := q.Pop()
			q.Unschedulable("p", cycle)
			waitState(t, q, "p", stateUnschedulable)
			tc.move(q)
			// A moved pod first waits out its back-off.
			if tc.want == stateActive {
				waitState(t, q, "p", stateActive)
				return
			}
			time.Sleep(50 * time.Millisecond)
			if st, _ := q.stateOf("p"); st != tc.want {
				t.Errorf("state = %v, want %v", st, tc.want)
			}
		})
	}
}

func TestQueueMoveDuringAttemptBacksOff(t *testing.T) {
	q := newTestQueue()
	defer q.Close()
	q.Add("p", 0, false, false)
	_, cycle, _ := q.Pop()
	q.MoveAll() // a node arrived while p was being scheduled
	q.Unschedulable("p", cycle)
	if st, _ := q.stateOf("p"); st != stateBackoff {
		t.Fatalf("state = %v, want back-off", st)
	}
	waitState(t, q, "p", stateActive)
}

func TestQueueRetryAfterDone(t *testing.T) {
	q := newTestQueue()
	defer q.Close()
	q.Add("p", 0, false, false)
	q.Pop()
	q.Done("p")
	if q.Len() != 0 {
		t.Fatalf("Len = %d after Done", q.Len())
	}
	q.Retry("p") // its binding failed
	waitState(t, q, "p", stateActive)
}

func TestQueueDeleteAndClose(t *testing.T) {
	q := newTestQueue()
	q.Add("p", 0, false, false)
	_, cycle, _ := q.Pop()
	q.Unschedulable("p", cycle)
	q.Delete("p")
	if q.Len() != 0 {
		t.Fatalf("Len = %d after Delete", q.Len())
	}
	q.MoveAll()
	done := make(chan bool)
	go func() {
		_, _, ok := q.Pop()
		done <- ok
	}()
	q.Close()
	if ok := <-done; ok {
		t.Error("Pop after Close returned a pod")
	}
}

func TestQueueFlushesLongUnschedulable(t *testing.T) {
	q := newSchedulingQueue(time.Now, time.Millisecond, time.Millisecond, 30*time.Millisecond)
	defer q.Close()
	q.Add("p", 0, false, false)
	_, cycle, _ := q.Pop()
	q.Unschedulable("p", cycle)
	waitState(t, q, "p", stateActive)
}

func TestBackoffDuration(t *testing.T) {
	q := newSchedulingQueue(time.Now, time.Second, 10*time.Second, time.Minute)
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}
	for i, w := range want {
		if got := q.backoffDuration(i + 1); got != w {
			t.Errorf("backoffDuration(%d) = %v, want %v", i+1, got, w)
		}
	}
}
