package tunnel

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
)

// TestCloseDeliversWrittenData: what one end wrote before it closed the
// session reaches the other end in full, followed by io.EOF (kubectl
// exec's exit status is the last thing the agent writes before closing).
func TestCloseDeliversWrittenData(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	payload := bytes.Repeat([]byte("0123456789abcdef"), 1<<16+7) // ~1 MiB, more than a window
	a := h.startAgent("node-a", agentSetup{serve: func(c net.Conn) {
		go func() {
			_, _ = c.Write(payload)
			_ = c.Close()
		}()
	}})
	waitClosed(t, a.Connected(), "agent connected", waitLong)
	for i := range 10 {
		c, err := h.srv.Dial(context.Background(), "node-a")
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("session %d: read %d of %d bytes, err %v", i, len(got), len(payload), err)
		}
	}

	// The other way round: the server writes and closes, the agent reads.
	got := make(chan []byte, 1)
	b := h.startAgent("node-b", agentSetup{serve: func(c net.Conn) {
		go func() {
			data, _ := io.ReadAll(c)
			c.Close()
			got <- data
		}()
	}})
	waitClosed(t, b.Connected(), "agent connected", waitLong)
	for i := range 10 {
		c, err := h.srv.Dial(context.Background(), "node-b")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(payload); err != nil {
			t.Fatal(err)
		}
		c.Close()
		if data := <-got; !bytes.Equal(data, payload) {
			t.Fatalf("session %d: agent read %d of %d bytes", i, len(data), len(payload))
		}
	}
}
