package netnstest

import (
	"errors"
	"fmt"
	"runtime"
)

// Program is a TB for programs that are not tests, such as the
// benchmarks that build their networks with this package: Fatal ends the
// function Run is running, with an error, as testing.T's FailNow ends a
// test; Cleanup collects functions for Close, which runs them the last
// registered first. Fatal must be called from the goroutine Run started.
type Program struct {
	err      error
	cleanups []func()
}

var _ TB = (*Program)(nil)

// Helper does nothing: a program has no test log to attribute lines in.
func (p *Program) Helper() {}

// Fatal ends the function Run is running with the error fmt.Sprint(args).
func (p *Program) Fatal(args ...any) { p.fail(errors.New(fmt.Sprint(args...))) }

// Fatalf ends the function Run is running with the formatted error.
func (p *Program) Fatalf(format string, args ...any) { p.fail(fmt.Errorf(format, args...)) }

// Cleanup registers f for Close.
func (p *Program) Cleanup(f func()) { p.cleanups = append(p.cleanups, f) }

func (p *Program) fail(err error) {
	p.err = err
	runtime.Goexit()
}

// Run calls fn on a goroutine of its own and returns the error fn
// returned or failed with.
func (p *Program) Run(fn func() error) error {
	p.err = nil
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := fn(); err != nil {
			p.err = err
		}
	}()
	<-done
	return p.err
}

// Close runs the cleanups, the last registered first.
func (p *Program) Close() {
	for i := len(p.cleanups) - 1; i >= 0; i-- {
		p.cleanups[i]()
	}
	p.cleanups = nil
}
