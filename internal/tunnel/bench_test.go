package tunnel

import (
	"io"
	"net"
	"testing"
)

// Session benchmarks: the same echo through a tunnel session and through a
// direct TCP connection on 127.0.0.1, side by side.
//
//	go test -run '^$' -bench . ./internal/tunnel/

// benchPairs returns the conn pairs to compare: the tunnel's (server end,
// agent end) and a loopback TCP connection's.
func benchPairs(b *testing.B) map[string][2]net.Conn {
	h := newHarness(b, harnessOptions{})
	ts, ta := rawPair(b, h, "node-bench")

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	tc, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	tcAccepted, ok := <-accepted
	if !ok {
		b.Fatal("accept failed")
	}
	b.Cleanup(func() { tc.Close(); tcAccepted.Close() })
	return map[string][2]net.Conn{"tunnel": {ts, ta}, "tcp": {tc, tcAccepted}}
}

// BenchmarkSessionRoundTrip measures one 64-byte request echoed back: the
// latency an exec keystroke or a small port-forward exchange sees.
func BenchmarkSessionRoundTrip(b *testing.B) {
	for _, name := range []string{"tunnel", "tcp"} {
		b.Run(name, func(b *testing.B) {
			pair := benchPairs(b)[name]
			go func() { _, _ = io.Copy(pair[1], pair[1]) }()
			msg := make([]byte, 64)
			buf := make([]byte, 64)
			b.SetBytes(int64(len(msg)))
			for b.Loop() {
				if _, err := pair[0].Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(pair[0], buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSessionThroughput measures bulk transfer from the agent to the
// server, as a port-forward download or a log stream does.
func BenchmarkSessionThroughput(b *testing.B) {
	for _, name := range []string{"tunnel", "tcp"} {
		b.Run(name, func(b *testing.B) {
			pair := benchPairs(b)[name]
			const chunk = 1 << 20
			done := make(chan error, 1)
			go func() {
				_, err := io.CopyN(io.Discard, pair[0], int64(b.N)*chunk)
				done <- err
			}()
			buf := make([]byte, chunk)
			b.SetBytes(chunk)
			b.ResetTimer()
			for range b.N {
				if _, err := pair[1].Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		})
	}
}
