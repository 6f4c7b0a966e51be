package expectations

import (
	"testing"
	"time"
)

func TestExpectations(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	type step struct {
		do            func(e *Expectations)
		wantSatisfied bool
	}
	tests := []struct {
		name  string
		key   string
		steps []step
	}{
		{name: "nothing expected", key: "rs", steps: []step{{do: func(*Expectations) {}, wantSatisfied: true}}},
		{name: "counted creates: any observed create meets one", key: "rs", steps: []step{
			{do: func(e *Expectations) { e.ExpectCreates("rs", 2, t0) }},
			{do: func(e *Expectations) { e.ObserveCreate("rs", "rs-abc") }},
			{do: func(e *Expectations) { e.ObserveCreate("rs", "") }, wantSatisfied: true},
		}},
		{name: "named creates: only the named pod meets it", key: "ds", steps: []step{
			{do: func(e *Expectations) { e.ExpectCreate("ds", "ds-a", t0) }},
			{do: func(e *Expectations) { e.ObserveCreate("ds", "ds-other") }},
			{do: func(e *Expectations) { e.ObserveCreate("ds", "ds-a") }, wantSatisfied: true},
		}},
		{name: "deletes by name", key: "rs", steps: []step{
			{do: func(e *Expectations) { e.ExpectDeletes("rs", []string{"ns/a", "ns/b"}, t0) }},
			{do: func(e *Expectations) { e.ObserveDelete("rs", "ns/a") }},
			{do: func(e *Expectations) { e.ObserveDelete("rs", "ns/b") }, wantSatisfied: true},
		}},
		{name: "named create and delete add up", key: "ds", steps: []step{
			{do: func(e *Expectations) { e.ExpectCreate("ds", "ds-a", t0); e.ExpectDelete("ds", "ds-b", t0) }},
			{do: func(e *Expectations) { e.ObserveCreate("ds", "ds-a") }},
			{do: func(e *Expectations) { e.ObserveDelete("ds", "ds-b") }, wantSatisfied: true},
		}},
		{name: "ExpectCreates replaces earlier expectations", key: "rs", steps: []step{
			{do: func(e *Expectations) { e.ExpectDeletes("rs", []string{"ns/a"}, t0); e.ExpectCreates("rs", 1, t0) }},
			{do: func(e *Expectations) { e.ObserveCreate("rs", "") }, wantSatisfied: true},
		}},
		{name: "forgotten", key: "rs", steps: []step{
			{do: func(e *Expectations) { e.ExpectCreates("rs", 5, t0); e.Forget("rs") }, wantSatisfied: true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := New(DefaultTimeout)
			for i, s := range tt.steps {
				s.do(e)
				if got := e.Satisfied(tt.key, t0); got != s.wantSatisfied {
					t.Fatalf("step %d: satisfied = %v, want %v", i, got, s.wantSatisfied)
				}
			}
		})
	}
}

func TestExpectationsTimeOut(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	e := New(time.Minute)
	e.ExpectCreates("rs", 1, t0)
	if e.Satisfied("rs", t0.Add(time.Minute)) {
		t.Fatal("satisfied before the timeout")
	}
	if !e.Satisfied("rs", t0.Add(time.Minute+time.Second)) {
		t.Fatal("a lost event wedges the controller past the timeout")
	}
	if !e.Satisfied("rs", t0) {
		t.Fatal("expectations given up are not dropped")
	}
}
