package netnstest

import (
	"errors"
	"slices"
	"testing"
)

func TestProgram(t *testing.T) {
	var p Program
	var order []string
	p.Cleanup(func() { order = append(order, "first") })

	err := p.Run(func() error {
		p.Cleanup(func() { order = append(order, "second") })
		p.Fatalf("no %s", "luck")
		order = append(order, "after Fatal") // never runs
		return nil
	})
	if err == nil || err.Error() != "no luck" {
		t.Fatalf("Run after Fatalf = %v, want \"no luck\"", err)
	}
	want := errors.New("plain")
	if err := p.Run(func() error { return want }); err != want {
		t.Fatalf("Run = %v, want %v", err, want)
	}
	if err := p.Run(func() error { return nil }); err != nil {
		t.Fatalf("Run of a function that succeeds = %v", err)
	}
	p.Close()
	if !slices.Equal(order, []string{"second", "first"}) {
		t.Fatalf("cleanups ran as %q, want last registered first", order)
	}
}
