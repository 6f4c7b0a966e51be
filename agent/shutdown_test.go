package agent

import (
	"context"
	"testing"
)

// TestNodeStop checks when the node's loops end: with the agent's context
// by default; with KillPodsOnStop only once killPods has ended them, unless
// the agent was stopped before killPods took over.
func TestNodeStop(t *testing.T) {
	tests := []struct {
		name          string
		kill          bool
		stopFirst     bool // the agent is stopped before killPods takes over
		wantTaken     bool
		wantRunOnStop bool // run is still alive right after the stop
	}{
		{name: "default: the loops end with the agent", kill: false, wantRunOnStop: false},
		{name: "kill pods: the loops outlive the stop until end", kill: true, wantTaken: true, wantRunOnStop: true},
		{name: "kill pods, stopped while starting", kill: true, stopFirst: true, wantTaken: false, wantRunOnStop: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := &Agent{cfg: Config{KillPodsOnStop: tc.kill}}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			s := a.newNodeStop(ctx)
			taken := false
			if tc.kill && !tc.stopFirst {
				taken = s.take()
			}
			cancel()
			if tc.kill && tc.stopFirst {
				// context.AfterFunc runs in a goroutine of its own: wait
				// for it before asking.
				<-s.run.Done()
				taken = s.take()
			}
			if taken != tc.wantTaken {
				t.Errorf("take() = %v, want %v", taken, tc.wantTaken)
			}
			if !tc.wantRunOnStop {
				<-s.run.Done() // ends, or the test times out
				return
			}
			if err := s.run.Err(); err != nil {
				t.Fatalf("the loops' context ended with the agent's (%v); killPods still needs it", err)
			}
			s.end()
			if s.run.Err() == nil {
				t.Error("end() did not end the loops' context")
			}
		})
	}
}
