package fakenet

// Synchronisation: what was sent has arrived, so that a check that
// something never arrived is not made while it is still on its way.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// serveMarkers answers every connection to markerPort with a line and
// records nothing: Flush's marker.
func (n *Net) serveMarkers() error {
	l, err := n.listenTCP(markerPort)
	if err != nil {
		return err
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.WriteString(c, "ok\n")
			}()
		}
	}()
	return nil
}

// marker sends a marker connection from the host and reads its answer.
func (n *Net) marker() error {
	c, err := net.DialTimeout("tcp", net.JoinHostPort(n.Addr(), strconv.Itoa(markerPort)), 2*time.Second)
	if err != nil {
		return fmt.Errorf("the marker connection: %w", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "ok\n" {
		return fmt.Errorf("the marker's answer: %q %v", line, err)
	}
	return nil
}

// Flush returns once what the host sent to the fake internet before it
// has been received and taken by the servers: a marker connection from
// the host crosses the link after it (the link delivers in order), and
// then no server has a connection waiting to be accepted or a datagram
// waiting to be read.
func (n *Net) Flush() error {
	if err := n.marker(); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	var waiting []string
	var err error
	deadline := time.Now().Add(5 * time.Second)
	for {
		if waiting, err = n.queued(); err == nil && len(waiting) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("flush: the fake internet's servers still have %v waiting (%v)", waiting, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// queued lists the servers' sockets that hold something not yet taken:
// a listener's accept queue, a UDP socket's receive queue.
func (n *Net) queued() ([]string, error) {
	var out []string
	err := n.InNS(func() error {
		for _, table := range []string{"tcp", "tcp6", "udp", "udp6"} {
			data, err := os.ReadFile("/proc/thread-self/net/" + table)
			if err != nil {
				return err
			}
			proto := strings.TrimSuffix(table, "6")
			for _, line := range strings.Split(string(data), "\n")[1:] {
				f := strings.Fields(line)
				if len(f) < 5 || (proto == "tcp" && f[3] != "0A") {
					continue // only listeners hold connections not yet accepted
				}
				_, portHex, _ := strings.Cut(f[1], ":")
				port, _ := strconv.ParseUint(portHex, 16, 16)
				_, rxHex, _ := strings.Cut(f[4], ":")
				if rx, _ := strconv.ParseUint(rxHex, 16, 64); rx > 0 && n.isServed(proto, port) {
					out = append(out, fmt.Sprintf("%s %s (%d)", table, f[1], rx))
				}
			}
		}
		return nil
	})
	return out, err
}
