//go:build unix

package pipelinetest

import (
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
)

// ClosedPort is a loopback port that refuses connections and stays
// reserved for the test: a TCP socket bound to it without SO_REUSEADDR and
// not listening. The kernel answers a connection to it with a reset
// ("connection refused"), and no other process or test package can bind
// the port meanwhile. An address from "listen on :0, then close" can be
// taken by a parallel test package between the close and its use, and a
// test expecting "connection refused" then talks to someone else's server.
type ClosedPort struct {
	// Addr is "127.0.0.1:port".
	Addr string

	mu sync.Mutex
	fd int // -1 once Listen took it or cleanup closed it
}

// ReservePort binds a fresh loopback port and keeps it closed until Listen
// or the end of the test.
func ReservePort(t testing.TB) *ClosedPort {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("reserve a loopback port: socket: %v", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		t.Fatalf("reserve a loopback port: bind: %v", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		syscall.Close(fd)
		t.Fatalf("reserve a loopback port: getsockname: %v", err)
	}
	p := &ClosedPort{Addr: fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port), fd: fd}
	t.Cleanup(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.fd >= 0 {
			syscall.Close(p.fd)
			p.fd = -1
		}
	})
	return p
}

// Listen starts listening on the reserved port, with no moment in between
// where another process could take it: the outage is over. It can be
// called once; the listener is the caller's to close.
func (p *ClosedPort) Listen() (net.Listener, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fd < 0 {
		return nil, fmt.Errorf("listen on %s: the port was already released", p.Addr)
	}
	if err := syscall.Listen(p.fd, syscall.SOMAXCONN); err != nil {
		return nil, fmt.Errorf("listen on %s: %w", p.Addr, err)
	}
	f := os.NewFile(uintptr(p.fd), "tcp:"+p.Addr)
	p.fd = -1
	defer f.Close() // FileListener dups the descriptor
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", p.Addr, err)
	}
	return ln, nil
}

// FreeAddr returns a loopback address whose port was free a moment ago,
// for a process under test to listen on itself. Another process can take
// the port before it does (rarely); for a port that must refuse
// connections, use ReservePort.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free loopback port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
