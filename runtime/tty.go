package runtime

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"

	"github.com/containerd/console"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/utils"
)

// stdio connects a container process to clawrun's own stdio, a terminal,
// or a caller's console socket, and tears the connection down afterwards.
type stdio struct {
	epoller     *console.Epoller
	console     *console.EpollConsole
	hostConsole console.Console
	closers     []io.Closer // closed when the process is gone
	postStart   []io.Closer // closed once the process has started
	copies      sync.WaitGroup
	consoleErr  chan error // receives the outcome of the pty hand-over
}

// setupStdio prepares process's stdio. With a terminal the pty master is
// either received here (foreground) or sent to consoleSocket (detached).
// Detached processes inherit clawrun's own stdio, as runc's callers expect.
func setupStdio(process *libcontainer.Process, c *libcontainer.Container, terminal, detach bool, consoleSocket string) (_ *stdio, retErr error) {
	if terminal {
		process.Stdin, process.Stdout, process.Stderr = nil, nil, nil
		s := &stdio{}
		if !detach {
			if err := s.openHostConsole(); err != nil {
				return nil, err
			}
			parent, child, err := utils.NewSockPair("console")
			if err != nil {
				return nil, err
			}
			process.ConsoleSocket = child
			s.postStart = append(s.postStart, parent, child)
			s.consoleErr = make(chan error, 1)
			go func() { s.consoleErr <- s.receiveConsole(parent) }()
			return s, nil
		}
		conn, err := net.Dial("unix", consoleSocket)
		if err != nil {
			return nil, fmt.Errorf("console socket %s: %w", consoleSocket, err)
		}
		defer func() {
			if retErr != nil {
				conn.Close()
			}
		}()
		f, err := conn.(*net.UnixConn).File()
		if err != nil {
			return nil, err
		}
		s.postStart = append(s.postStart, conn, f)
		process.ConsoleSocket = f
		return s, nil
	}
	if detach {
		process.Stdin, process.Stdout, process.Stderr = os.Stdin, os.Stdout, os.Stderr
		return &stdio{}, nil
	}
	// Foreground without a terminal: pipes owned by the container's root,
	// copied to and from clawrun's stdio.
	cfg := c.Config()
	uid, err := cfg.HostRootUID()
	if err != nil {
		return nil, err
	}
	gid, err := cfg.HostRootGID()
	if err != nil {
		return nil, err
	}
	pipes, err := process.InitializeIO(uid, gid)
	if err != nil {
		return nil, err
	}
	s := &stdio{closers: []io.Closer{pipes.Stdin, pipes.Stdout, pipes.Stderr}}
	for _, end := range []any{process.Stdin, process.Stdout, process.Stderr} {
		if cl, ok := end.(io.Closer); ok {
			s.postStart = append(s.postStart, cl)
		}
	}
	go func() {
		_, _ = io.Copy(pipes.Stdin, os.Stdin)
		_ = pipes.Stdin.Close()
	}()
	s.copies.Add(2)
	go s.copy(os.Stdout, pipes.Stdout)
	go s.copy(os.Stderr, pipes.Stderr)
	return s, nil
}

func (s *stdio) copy(w io.Writer, r io.ReadCloser) {
	defer s.copies.Done()
	_, _ = io.Copy(w, r)
	_ = r.Close()
}

// openHostConsole finds the terminal clawrun itself runs on.
func (s *stdio) openHostConsole() error {
	for _, f := range []*os.File{os.Stderr, os.Stdout, os.Stdin} {
		c, err := console.ConsoleFromFile(f)
		if err == nil {
			s.hostConsole = c
			return nil
		}
		if !errors.Is(err, console.ErrNotAConsole) {
			return fmt.Errorf("unable to get console: %w", err)
		}
	}
	tty, err := os.Open("/dev/tty")
	if err != nil {
		return fmt.Errorf("a terminal was requested but clawrun has none (use --console-socket with -d): %w", err)
	}
	c, err := console.ConsoleFromFile(tty)
	if err != nil {
		return fmt.Errorf("unable to get console: %w", err)
	}
	s.hostConsole = c
	return nil
}

// receiveConsole takes the pty master from the container's init and
// relays it to clawrun's own terminal.
func (s *stdio) receiveConsole(socket *os.File) (retErr error) {
	f, err := utils.RecvFile(socket)
	if err != nil {
		return err
	}
	cons, err := console.ConsoleFromFile(f)
	if err != nil {
		return err
	}
	if err := console.ClearONLCR(cons.Fd()); err != nil {
		return err
	}
	epoller, err := console.NewEpoller()
	if err != nil {
		return err
	}
	epollConsole, err := epoller.Add(cons)
	if err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			_ = epollConsole.Close()
		}
	}()
	go func() { _ = epoller.Wait() }()
	go func() { _, _ = io.Copy(epollConsole, os.Stdin) }()
	s.copies.Add(1)
	go s.copy(os.Stdout, epollConsole)
	if err := s.hostConsole.SetRaw(); err != nil {
		return fmt.Errorf("failed to set the terminal from the stdin: %w", err)
	}
	go restoreOnInterrupt(s.hostConsole)
	s.epoller = epoller
	s.console = epollConsole
	s.closers = []io.Closer{epollConsole}
	return nil
}

func restoreOnInterrupt(c console.Console) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt)
	<-ch
	_ = c.Reset()
	os.Exit(0)
}

// waitConsole waits for the pty hand-over, if there is one.
func (s *stdio) waitConsole() error {
	if s.consoleErr != nil {
		return <-s.consoleErr
	}
	return nil
}

// closePostStart drops clawrun's copies of the ends given to the process.
func (s *stdio) closePostStart() {
	for _, c := range s.postStart {
		_ = c.Close()
	}
}

// Close flushes the copies and restores the host terminal.
func (s *stdio) Close() {
	s.closePostStart()
	if s.console != nil && s.epoller != nil {
		_ = s.console.Shutdown(s.epoller.CloseConsole)
	}
	s.copies.Wait()
	for _, c := range s.closers {
		_ = c.Close()
	}
	if s.hostConsole != nil {
		_ = s.hostConsole.Reset()
	}
}

func (s *stdio) resize() error {
	if s.console == nil || s.hostConsole == nil {
		return nil
	}
	return s.console.ResizeFrom(s.hostConsole)
}
